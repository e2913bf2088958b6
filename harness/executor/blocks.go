package executor

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

// Net is what a model gives the executor: its layout and, per block, its weights and graphs.
type Net interface {
	Layout() hook.Layout
	// BlockWeights are the arguments block b's graph receives after the stream and the conditioning.
	BlockWeights(b int) []*tensors.Tensor
	// Block builds one block's pieces inside a graph from its weights and the conditioning.
	Block(w, cond []*Node) Block
}

// Block is one block of a model inside a graph under construction.
type Block interface {
	// Module computes module m's raw output from the residual stream x [B, N, D]; with rows
	// [B, K] (int32 token indices) only those tokens' outputs [B, K, D] (the module may still
	// read every token, as an attention's keys do). With side ≠ ScoreNone a full attention also
	// returns its side information: ScoreAttention → the attention each token received [B, N]
	// (column sums of the head-averaged probabilities), ScoreValueNorm → value norms [B, heads, N].
	Module(m int, x, rows *Node, side hook.TokenScore) (out, info *Node)
	// Residual adds module m's raw output into the stream; added is the term added (for probes).
	Residual(m int, x, out *Node) (next, added *Node)
	// Probes are named intermediates of the block for golden tests (e.g. "adaln").
	Probes() []Named
	// Input is the first module's input as the module reads it (the attention's normalised,
	// modulated stream): TeaCache's gate statistic.
	Input(x *Node) *Node
}

// Named is a named graph node.
type Named struct {
	Name string
	Node *Node
}

// modSig is the compiled variant of one module inside a block graph.
type modSig struct {
	Action  hook.Action     // Full, Reuse, Partial or Predict
	Out     bool            // the output leaves the graph (cache, recorder, probes)
	Refresh hook.TokenScore // Full source module: the base score to store
	Update  bool            // Partial source module of an entropy score: refresh the fresh tokens' base
	History int             // Full: history terms produced (0 = none)
	Series  int             // Predict: history terms summed
	// Partial:
	Bucket  int  // rows computed (the fresh count rounded up to a bucket; 0 = none)
	Planned bool // tokens planned on the host (idx and inverse map are inputs)
	Rule    bool // a selection rule: staleness tracked on the device
	Choose  bool // the rule chooses (else it only reports its own choice)
	Report  bool // score_in and the rule's choice leave the graph (Options.Choices)
	Emit    bool // the chosen token indices leave the graph (Options.Tokens)
	Score   hook.TokenScore
	Weight  float32
	Norm    int
	Grid    int
	Beta    float32
	Pairs   bool
}

type blockSig struct {
	Mods    []modSig
	Probe   bool
	BaseIn  bool // the stored base score enters the graph (after the weights)
	BaseOut bool // the block's base score leaves the graph (right after the stream)
}

func (s blockSig) key() string { return fmt.Sprintf("block/%+v", s) }

// Blocks carries out a plan on the stream h [B, N, D] (after the embedders) with the model's
// conditioning tensors, and returns the stream after the last block. It takes ownership of h;
// the result is the caller's to release unless cached is true (it is then kept in opt.Cache).
func (e *Executor) Blocks(h *tensors.Tensor, cond []*tensors.Tensor, plan *hook.Plan, opt hook.Options) (out *tensors.Tensor, cached bool) {
	kept := map[*tensors.Tensor]bool{}
	release := func(t *tensors.Tensor) {
		if !kept[t] {
			t.MustFinalizeAll()
		}
	}
	inputs := map[hook.Span]*tensors.Tensor{}
	// h0, the stream entering block 0, is kept for a residual gate's statistic.
	var h0 *tensors.Tensor
	if plan.Gate != nil && plan.Gate.Stat == hook.StatResidual {
		h0, kept[h] = h, true
		defer h0.MustFinalizeAll()
	}
	for b := 0; b < e.layout.Depth; {
		if sk, ok := plan.SkipAt(b); ok {
			next := e.skip(sk, h, opt.Cache)
			if sk.Mode == hook.SkipReplace {
				kept[next] = true
			}
			release(h)
			h = next
			if opt.Modules != nil {
				for sb := sk.From; sb <= sk.To; sb++ {
					for mi, mod := range e.layout.Modules {
						opt.Modules(sb, mod, plan.Blocks[sb].Modules[mi].Action, 0, nil)
					}
				}
			}
			b = sk.To + 1
			continue
		}
		for _, sp := range plan.Keep {
			if sp.From == b {
				inputs[sp] = h
				kept[h] = true
			}
		}
		if g := plan.Gate; g != nil && g.Span.From == b {
			h = e.gated(g, h, h0, cond, plan, opt)
			b = g.Span.To + 1
			continue
		}
		next := e.block(b, h, cond, &plan.Blocks[b], opt, !plan.RangesOnly)
		release(h)
		h = next
		for _, sp := range plan.Keep {
			if sp.To == b {
				opt.Cache.SetSpan(sp, inputs[sp], h)
				kept[h] = true
			}
		}
		if opt.Probe != nil {
			opt.Probe(fmt.Sprintf("block_%d", b), h)
		}
		b++
	}
	return h, kept[h]
}

// skip replaces a block range by its cache: the cached residual added to the new input, or the
// cached output itself.
func (e *Executor) skip(sk hook.SpanSkip, h *tensors.Tensor, c *hook.Cache) *tensors.Tensor {
	sc := c.Span(sk.Cached())
	if sk.Mode == hook.SkipReplace {
		return sc.Out
	}
	add := e.Family("skip/residual", func(in []*Node) []*Node { return []*Node{Add(in[0], Sub(in[1], in[2]))} })
	return add.Run(h, sc.Out, sc.In)[0]
}

// block runs one block under its plan and updates the cache.
func (e *Executor) block(b int, h *tensors.Tensor, cond []*tensors.Tensor, bp *hook.BlockPlan, opt hook.Options, storeOutputs bool) *tensors.Tensor {
	sig, args := e.blockArgs(b, h, cond, bp, opt, storeOutputs)
	nc, nw := len(cond), len(e.net.BlockWeights(b))
	fam := e.Family(sig.key(), func(in []*Node) []*Node { return e.blockGraph(in, nc, nw, sig) })
	outs := fam.Run(args...)
	rest := outs[1:]
	take := func() *tensors.Tensor { t := rest[0]; rest = rest[1:]; return t }
	if sig.BaseOut {
		opt.Cache.SetBase(b, take())
	}
	used, free := e.keep(b, sig, bp, opt, h.Shape().Dimensions[0], take, storeOutputs)
	if opt.Probe != nil {
		for _, p := range e.probeNames {
			t := take()
			opt.Probe(fmt.Sprintf("block%d_%s", b, p), t)
			free = append(free, t)
		}
		for m, mod := range e.layout.Modules {
			opt.Probe(fmt.Sprintf("block%d_%s_raw", b, mod), used[m])
			added := take()
			opt.Probe(fmt.Sprintf("block%d_%s", b, mod), added)
			free = append(free, added)
		}
	}
	if opt.Modules != nil {
		for m, mod := range e.layout.Modules {
			mp := bp.Modules[m]
			fresh := mp.Fresh()
			if mp.Action == hook.Full {
				fresh = e.layout.Tokens
			}
			opt.Modules(b, mod, mp.Action, fresh, used[m])
		}
	}
	for _, t := range free {
		t.MustFinalizeAll()
	}
	return outs[0]
}

// blockArgs decides the block's compiled variant and its arguments: the stream, the
// conditioning, the weights, then each module's. Token choices the host makes (host.go) happen
// here and enter as planned tokens.
func (e *Executor) blockArgs(b int, h *tensors.Tensor, cond []*tensors.Tensor, bp *hook.BlockPlan, opt hook.Options, storeOutputs bool) (blockSig, []any) {
	sig := blockSig{Probe: opt.Probe != nil}
	args := append([]any{h}, anyOf(cond)...)
	args = append(args, anyOf(e.net.BlockWeights(b))...)
	rows := h.Shape().Dimensions[0]
	var modArgs []any
	for m, mp := range bp.Modules {
		mopt := opt
		if e.hostChoice(mp, bp, opt) {
			// The rule still ages the counters in the graph; the caller's plan gets the tokens
			// when it asks, and a plan that forces other tokens keeps them.
			scoreIn, fresh := e.chooseOnHost(b, m, mp.Select, opt.Cache, rows)
			mopt.Choices = nil
			if mp.Tokens == nil {
				mp.Tokens = fresh
				if opt.Tokens {
					bp.Modules[m].Tokens = fresh
				}
			}
			if opt.Choices != nil {
				opt.Choices(b, e.layout.Modules[m], scoreIn, fresh)
			}
		}
		ms, margs := e.moduleSig(b, m, mp, bp.Refresh, rows, mopt, storeOutputs)
		sig.Mods = append(sig.Mods, ms)
		modArgs = append(modArgs, margs...)
		sig.BaseIn = sig.BaseIn || ms.Update || ((ms.Choose || ms.Report) && storedScore(ms.Score))
		sig.BaseOut = sig.BaseOut || ms.Refresh != hook.ScoreNone || ms.Update
	}
	if sig.BaseIn {
		// No base score yet (nothing refreshed it): staleness alone orders the tokens.
		args = append(args, or(opt.Cache.Base(b), e.zeros(rows)))
	}
	return sig, append(args, modArgs...)
}

// storedScore reports whether a score is kept in the cache between calls (refreshed by its
// source module), rather than computed from the module's input or given by the plan.
func storedScore(s hook.TokenScore) bool {
	return s == hook.ScoreAttention || s == hook.ScoreValueNorm || s == hook.ScoreEntropy
}

// keep takes the block graph's outputs after the stream, in the order blockGraph appends them,
// into the cache and the plan. It returns each module's output as the block used it and the
// outputs nobody keeps.
func (e *Executor) keep(b int, sig blockSig, bp *hook.BlockPlan, opt hook.Options, rows int, take func() *tensors.Tensor, storeOutputs bool) (used, free []*tensors.Tensor) {
	c := opt.Cache
	used = make([]*tensors.Tensor, len(sig.Mods))
	for m, ms := range sig.Mods {
		mp := &bp.Modules[m]
		if ms.Out {
			used[m] = take()
		} else if ms.Action == hook.Reuse || ms.Action == hook.Partial {
			used[m] = c.Out(b, m)
		}
		if ms.Rule {
			c.SetStale(b, m, take())
		}
		if ms.Emit {
			chosen := take()
			mp.Tokens = firstK(chosen, mp.Select.K)
			free = append(free, chosen)
		}
		if ms.Report {
			scoreIn, own := take(), take()
			opt.Choices(b, e.layout.Modules[m], rowsOf(scoreIn, e.layout.Tokens), firstK(own, mp.Select.K))
			free = append(free, scoreIn, own)
		}
		var hist []*tensors.Tensor
		for range ms.History {
			hist = append(hist, take())
		}
		switch {
		case ms.History > 0:
			// The output is history term 0. The module's cached output is not kept as well: a
			// method that predicts never reuses it, and both would hold one buffer.
			used[m] = hist[0]
			c.SetHistory(b, m, hist)
			c.SetOut(b, m, nil)
			c.SetStale(b, m, nil)
		case c != nil && storeOutputs && ms.Out && (ms.Action == hook.Full || ms.Action == hook.Partial):
			c.SetOut(b, m, used[m])
			if ms.Action == hook.Full {
				c.SetStale(b, m, nil) // every token fresh
			}
		case ms.Out:
			free = append(free, used[m])
		}
		if opt.Tokens && mp.Action == hook.Partial && mp.Tokens == nil {
			mp.Tokens = make([][]int32, rows) // k = 0: no token chosen
			for r := range mp.Tokens {
				mp.Tokens[r] = []int32{}
			}
		}
	}
	return used, free
}

// moduleSig decides the compiled variant of one module and the arguments it takes.
func (e *Executor) moduleSig(b, m int, mp hook.ModulePlan, refresh hook.TokenScore, rows int, opt hook.Options, storeOutputs bool) (modSig, []any) {
	c := opt.Cache
	ms := modSig{Action: mp.Action}
	want := (c != nil && storeOutputs) || opt.Probe != nil || opt.Modules != nil
	var args []any
	switch mp.Action {
	case hook.Full:
		ms.Out = want
		if refresh != hook.ScoreNone && e.layout.Modules[m] == refresh.Source() && c != nil {
			ms.Refresh = refresh
		}
		if h := mp.History; h != nil {
			ms.History, ms.Out = h.Orders, false
			args = append(args, h.Step)
			args = append(args, anyOf(c.History(b, m)[:h.Orders-1])...)
		}
	case hook.Reuse:
		args = append(args, c.Out(b, m))
	case hook.Predict:
		ms.Out = want
		ms.Series = len(mp.Series.Scale)
		args = append(args, anyOf(c.History(b, m)[:ms.Series])...)
		args = append(args, mp.Series.Scale, mp.Series.Power)
	case hook.Partial:
		k := mp.Fresh()
		ms.Bucket = tokenBucket(k, e.layout.Tokens)
		ms.Out = ms.Bucket > 0
		args = append(args, c.Out(b, m), int32(k))
		if mp.Tokens != nil {
			ms.Planned = true
			if ms.Bucket > 0 {
				idx, inv := partialIndices(mp.Tokens, e.layout.Tokens, ms.Bucket)
				args = append(args, idx, inv)
			}
		}
		// A partial cross-attention refreshes the entropy of the tokens it recomputes.
		ms.Update = mp.Select != nil && mp.Select.Score == hook.ScoreEntropy && e.layout.Modules[m] == hook.ScoreEntropy.Source() && ms.Bucket > 0
		if s := mp.Select; s != nil {
			ms.Rule, ms.Choose = true, mp.Tokens == nil
			ms.Report = opt.Choices != nil
			ms.Emit = ms.Choose && opt.Tokens && ms.Bucket > 0
			ms.Score, ms.Weight, ms.Norm, ms.Grid, ms.Beta, ms.Pairs = s.Score, s.StaleWeight, s.StaleNorm, s.Grid, s.Beta, s.Pairs
			if (ms.Choose || ms.Report) && s.Score == hook.ScoreRandom {
				args = append(args, tensors.FromFlatDataAndDimensions(flatten(s.Random), rows, e.layout.Tokens))
			}
			args = append(args, or(c.Stale(b, m), e.zeros(rows)))
		}
	}
	if opt.Probe != nil && mp.Action == hook.Predict {
		ms.Out = true
	}
	return ms, args
}

// blockGraph builds a block under sig. Inputs: x, the conditioning (nc), the block weights (nw),
// then each module's arguments in the order moduleSig appends them.
func (e *Executor) blockGraph(in []*Node, nc, nw int, sig blockSig) []*Node {
	x := in[0]
	cond, w, rest := in[1:1+nc], in[1+nc:1+nc+nw], in[1+nc+nw:]
	next := func() *Node { n := rest[0]; rest = rest[1:]; return n }
	blk := e.net.Block(w, cond)
	// base is the block's stored token score as it evolves through the block: a full source
	// module replaces it, a partial cross-attention updates its fresh tokens, and a later module's
	// choice in the same call sees the update (ToCa-PixArt's MLP uses the map its cross step updated).
	var base *Node
	if sig.BaseIn {
		base = next()
	}
	var outs, probes []*Node
	for m, ms := range sig.Mods {
		var out *Node
		var extra []*Node
		switch ms.Action {
		case hook.Full:
			var info *Node
			out, info = blk.Module(m, x, nil, ms.Refresh)
			if ms.Refresh != hook.ScoreNone {
				base = baseScore(ms.Refresh, info)
			}
			if ms.History > 0 {
				d := next()
				cur := out
				hist := []*Node{cur}
				for range ms.History - 1 {
					cur = Div(Sub(cur, next()), d)
					hist = append(hist, cur)
				}
				extra = append(extra, hist...)
			}
		case hook.Reuse:
			out = next()
		case hook.Predict:
			terms := make([]*Node, ms.Series)
			for i := range terms {
				terms[i] = next()
			}
			scale, power := next(), next()
			for i, f := range terms {
				t := Mul(Mul(f, Reshape(Slice(scale, AxisElem(i)))), Reshape(Slice(power, AxisElem(i))))
				if out == nil {
					out = t
				} else {
					out = Add(out, t)
				}
			}
		case hook.Partial:
			out, extra = e.partial(blk, m, x, ms, next, &base)
		}
		if ms.Out {
			outs = append(outs, out)
		}
		outs = append(outs, extra...)
		var added *Node
		x, added = blk.Residual(m, x, out)
		if sig.Probe {
			probes = append(probes, added)
		}
	}
	all := []*Node{x}
	if sig.BaseOut {
		all = append(all, base)
	}
	all = append(all, outs...)
	if sig.Probe {
		names := []string{}
		for _, p := range blk.Probes() {
			all = append(all, p.Node)
			names = append(names, p.Name)
		}
		e.setProbeNames(names)
		all = append(all, probes...)
	}
	return all
}

// partial computes a module for some tokens of each row and merges them into its cache. It
// returns the merged output and the extra outputs in the order block takes them: the new
// staleness counters (Rule), the chosen tokens (Emit), score_in and the rule's own choice (Report).
func (e *Executor) partial(blk Block, m int, x *Node, ms modSig, next func() *Node, base **Node) (out *Node, extra []*Node) {
	g := x.Graph()
	B, n := x.Shape().Dimensions[0], e.layout.Tokens
	cache, k := next(), next()
	var idx, inv *Node
	if ms.Planned && ms.Bucket > 0 {
		idx, inv = next(), next()
	}
	var given, stale *Node
	switch {
	case (ms.Choose || ms.Report) && ms.Score == hook.ScoreRandom:
		given = next()
	case storedScore(ms.Score):
		given = *base
	}
	if ms.Rule {
		stale = next()
	}
	iota := Iota(g, shapes.Make(dtypes.Int32, B, n), 1)
	var report []*Node
	if ms.Choose || ms.Report {
		scoreIn := scoreIn(ms, given, stale, x, cache)
		scored := scoreIn
		if ms.Grid > 0 {
			scored = gridBonus(scoreIn, e.layout.GridH, e.layout.GridW, ms.Grid, ms.Beta)
		}
		rank := rankDescending(scored)
		order := argsort(rank)
		if ms.Choose && ms.Bucket > 0 {
			idx = Slice(order, AxisRange(), AxisRange(0, ms.Bucket))
			inv = Where(LessThan(rank, k), rank, AddScalar(iota, float64(ms.Bucket)))
		}
		report = []*Node{scoreIn, Slice(order, AxisRange(), AxisRange(0, max(ms.Bucket, 1)))}
	}
	selected := Zeros(g, shapes.Make(dtypes.Bool, B, n)) // k = 0: nothing recomputed
	if ms.Bucket == 0 {
		out = cache
	} else {
		side := hook.ScoreNone
		if ms.Update {
			side = hook.ScoreEntropy
		}
		fresh, info := blk.Module(m, x, idx, side)                   // [B, K', D]
		out = GatherRows(Concatenate([]*Node{fresh, cache}, 1), inv) // fresh rows where chosen, cache elsewhere
		selected = LessThan(inv, k)
		if ms.Update {
			merged := GatherRows(InsertAxes(Concatenate([]*Node{info, *base}, 1), -1), inv)
			*base = Squeeze(merged, -1)
		}
	}
	if ms.Rule {
		extra = append(extra, Where(selected, ZerosLike(stale), OnePlus(stale)))
	}
	if ms.Emit {
		extra = append(extra, idx)
	}
	if ms.Report {
		extra = append(extra, report...)
	}
	return out, extra
}

// scoreIn is the score before the grid bonus: base + float32(λ·stale)/float32(N), in float32
// as the official code computes it.
func scoreIn(ms modSig, base, stale, x, cache *Node) *Node {
	switch ms.Score {
	case hook.ScoreNorm:
		base = l2normalize(vectorNorm(x))
	case hook.ScoreSimilarity:
		// F.cosine_similarity with eps 1e-8 on each norm, then 1 − cos.
		cos := Div(ReduceSum(Mul(x, cache), -1), Mul(MaxScalar(vectorNorm(x), 1e-8), MaxScalar(vectorNorm(cache), 1e-8)))
		base = l2normalize(OneMinus(cos))
	case hook.ScoreEntropy:
		// H(P̄) = e_r + e_{r+B/2} for paired CFG halves (the same for both), 2e_r for a row alone.
		pair := base
		if ms.Pairs {
			h := base.Shape().Dimensions[0] / 2
			pair = Slice(base, AxisRange(h, 2*h))
			base = Slice(base, AxisRange(0, h))
			sum := Add(base, pair)
			base = l2normalize(OnePlus(Concatenate([]*Node{sum, sum}, 0)))
		} else {
			base = l2normalize(OnePlus(Add(base, pair)))
		}
	}
	return Add(base, DivScalar(MulScalar(stale, float64(ms.Weight)), float64(float32(ms.Norm))))
}

// zeros returns a device tensor [rows, tokens] of zeros, made once per row count and never
// released: a missing base score or all-zero staleness counters enter the graph as it, so that
// "nothing stored yet" needs no graph variant of its own (0 + x = x exactly).
func (e *Executor) zeros(rows int) *tensors.Tensor {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.zero == nil {
		e.zero = map[int]*tensors.Tensor{}
	}
	if z, ok := e.zero[rows]; ok {
		return z
	}
	z := tensors.FromFlatDataAndDimensions(make([]float32, rows*e.layout.Tokens), rows, e.layout.Tokens)
	e.zero[rows] = z
	return z
}

func or(t, otherwise *tensors.Tensor) *tensors.Tensor {
	if t != nil {
		return t
	}
	return otherwise
}
