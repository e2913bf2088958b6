// Package dit is the Diffusion Transformer of Peebles & Xie ("Scalable Diffusion Models with
// Transformers"), written to reproduce the reference models.py exactly, and exposing every block's
// attention and MLP to acceleration methods through the hook surface.
//
// The network, top to bottom:
//
//	x [B,C,H,W] ──patchify (conv p×p, stride p)──► tokens [B,N,D] + fixed 2-D sin-cos pos_embed
//	t ──sinusoid (256, cos first)──► MLP ──┐
//	y ──label table (row NumClasses = null)──┴─► c = t_emb + y_emb
//	repeat Depth times (adaLN-Zero block):
//	    shift/scale/gate ×2 = Linear(SiLU(c))
//	    x += gate_msa · Attn(LN(x)·(1+scale_msa) + shift_msa)      ◄─ hook: attention
//	    x += gate_mlp · MLP (LN(x)·(1+scale_mlp) + shift_mlp)      ◄─ hook: MLP
//	final: Linear(LN(x)·(1+scale) + shift) ──unpatchify──► [B, C or 2C, H, W]
//
// Execution is one compiled graph per (block action combination × batch × token bucket), with
// the block's weights passed as arguments, so a 28-block model compiles a handful of graphs.
package dit

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// FreqEmbedSize is the width of the sinusoidal timestep features (fixed in the reference).
const FreqEmbedSize = 256

// Config is the architecture of one DiT.
type Config struct {
	InputSize  int     // latent height = width
	PatchSize  int     // p
	InChannels int     // C
	Hidden     int     // D
	Depth      int     // number of blocks
	Heads      int     // attention heads (not inferable from weights)
	MLPRatio   float64 // MLP hidden = D · MLPRatio
	NumClasses int     // label table has NumClasses+1 rows; the last is the null label
	LearnSigma bool    // output 2C channels (ε and the variance interpolation v)
}

// Grid is the token grid side (InputSize / PatchSize).
func (c Config) Grid() int { return c.InputSize / c.PatchSize }

// Tokens is the number of tokens per image.
func (c Config) Tokens() int { return c.Grid() * c.Grid() }

// OutChannels is C, or 2C with learned sigma.
func (c Config) OutChannels() int {
	if c.LearnSigma {
		return 2 * c.InChannels
	}
	return c.InChannels
}

// MLPHidden is the width of the MLP's hidden layer.
func (c Config) MLPHidden() int { return int(float64(c.Hidden) * c.MLPRatio) }

// NullClass is the label index that means "unconditional".
func (c Config) NullClass() int { return c.NumClasses }

// Validate reports an inconsistent configuration.
func (c Config) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.InputSize <= 0 || c.InputSize%c.PatchSize != 0:
		return fmt.Errorf("input size %d must be a positive multiple of patch size %d", c.InputSize, c.PatchSize)
	case c.InChannels <= 0 || c.Hidden <= 0 || c.Depth <= 0 || c.NumClasses <= 0:
		return fmt.Errorf("channels %d, hidden %d, depth %d and classes %d must be positive", c.InChannels, c.Hidden, c.Depth, c.NumClasses)
	case c.Heads <= 0 || c.Hidden%c.Heads != 0:
		return fmt.Errorf("hidden size %d is not divisible by %d heads", c.Hidden, c.Heads)
	case c.Hidden%4 != 0:
		return fmt.Errorf("hidden size %d must be divisible by 4 (2-D sin-cos positions)", c.Hidden)
	case c.MLPHidden() <= 0:
		return fmt.Errorf("MLP ratio %g gives an empty MLP", c.MLPRatio)
	}
	return nil
}

// String is the model's one-line description.
func (c Config) String() string {
	sigma := ""
	if c.LearnSigma {
		sigma = ", learned sigma"
	}
	return fmt.Sprintf("DiT depth %d, hidden %d, %d heads, patch %d, input %dx%dx%d, %d classes%s",
		c.Depth, c.Hidden, c.Heads, c.PatchSize, c.InChannels, c.InputSize, c.InputSize, c.NumClasses, sigma)
}

// presets are the reference DiT_models table (depth, hidden, heads).
var presets = map[string][3]int{
	"S": {12, 384, 6}, "B": {12, 768, 12}, "L": {24, 1024, 16}, "XL": {28, 1152, 16},
}

// PresetNames lists the named presets, e.g. "DiT-XL/2".
func PresetNames() []string {
	var names []string
	for s := range presets {
		for _, p := range []int{2, 4, 8} {
			names = append(names, fmt.Sprintf("DiT-%s/%d", s, p))
		}
	}
	sort.Strings(names)
	return names
}

// Preset returns a named configuration ("DiT-XL/2", ...) for a given image size in pixels
// (latent = image/8, 4 channels, 1000 ImageNet classes, learned sigma, as the reference).
func Preset(name string, imageSize int) (Config, error) {
	var size string
	var patch int
	if _, err := fmt.Sscanf(strings.Replace(strings.TrimPrefix(name, "DiT-"), "/", " ", 1), "%s %d", &size, &patch); err != nil {
		return Config{}, fmt.Errorf("unknown DiT preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	p, ok := presets[size]
	if !ok || (patch != 2 && patch != 4 && patch != 8) || !strings.HasPrefix(name, "DiT-") {
		return Config{}, fmt.Errorf("unknown DiT preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	if imageSize <= 0 || imageSize%8 != 0 {
		return Config{}, fmt.Errorf("image size %d must be a positive multiple of 8", imageSize)
	}
	c := Config{InputSize: imageSize / 8, PatchSize: patch, InChannels: 4, Depth: p[0], Hidden: p[1], Heads: p[2],
		MLPRatio: 4, NumClasses: 1000, LearnSigma: true}
	return c, c.Validate()
}

// Layout is what the model exposes to acceleration methods.
func (c Config) Layout() hook.Layout {
	return hook.Layout{Depth: c.Depth, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: c.Tokens(),
		GridH: c.Grid(), GridW: c.Grid(), Hidden: c.Hidden, Heads: c.Heads}
}

// Model is a DiT with its weights resident on a backend.
type Model struct {
	Config
	backend backends.Backend
	w       *weights

	mu    sync.Mutex
	execs map[string]*Exec
}

// Options steer one forward pass.
type Options = hook.Options

// Spec is the data layout of the model.
func (c Config) Spec() hook.Spec {
	return hook.Spec{Channels: c.InChannels, Height: c.InputSize, Width: c.InputSize, LearnSigma: c.LearnSigma, NumClasses: c.NumClasses}
}

// Forward runs the model: x is [B, C, H, W] flattened NCHW, t the original (0..999 scale)
// timesteps, y the labels (NumClasses = null). It returns [B, OutChannels, H, W] flattened.
func (m *Model) Forward(x []float32, t []float64, y []int64, opt Options) ([]float32, error) {
	B := len(t)
	c := m.Config
	if B == 0 || len(y) != B {
		return nil, fmt.Errorf("forward: %d timesteps and %d labels (need the same positive count)", B, len(y))
	}
	if want := B * c.InChannels * c.InputSize * c.InputSize; len(x) != want {
		return nil, fmt.Errorf("forward: x has %d values, want %d = %d×%d×%d×%d", len(x), want, B, c.InChannels, c.InputSize, c.InputSize)
	}
	labels := make([]int32, B)
	for i, v := range y {
		if v < 0 || v > int64(c.NumClasses) {
			return nil, fmt.Errorf("forward: label %d of row %d out of range [0, %d] (%d = null)", v, i, c.NumClasses, c.NumClasses)
		}
		labels[i] = int32(v)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("forward: x holds a non-finite value (%v) at flat index %d", v, i)
		}
	}
	plan := opt.Plan
	if plan == nil {
		plan = hook.FullPlan(c.Layout())
	}
	if err := plan.Validate(c.Layout(), opt.Cache, B); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	var out []float32
	err := gx.Catch(func() { out = m.forward(x, t, labels, plan, opt) })
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return out, nil
}

func (m *Model) forward(x []float32, t []float64, labels []int32, plan *hook.Plan, opt Options) []float32 {
	c := m.Config
	B := len(t)
	probe := opt.Probe
	tfreq := TimestepFeatures(t)
	if probe != nil {
		probe("t_freq", tensors.FromFlatDataAndDimensions(tfreq, B, FreqEmbedSize))
	}

	// Embedders.
	emb := m.exec(fmt.Sprintf("embed/probe=%t", probe != nil), func(in []*Node) []*Node { return m.embedGraph(in, probe != nil) })
	args := []any{tensors.FromFlatDataAndDimensions(x, B, c.InChannels, c.InputSize, c.InputSize),
		tensors.FromFlatDataAndDimensions(tfreq, B, FreqEmbedSize), tensors.FromFlatDataAndDimensions(labels, B)}
	outs := emb.MustExec(append(args, m.w.embedArgs()...)...)
	h, cond := outs[0], outs[1]
	if probe != nil {
		for i, name := range []string{"x_embed", "c", "t_emb", "y_emb"} {
			probe(name, outs[i])
		}
		for _, o := range outs[2:] {
			o.MustFinalizeAll()
		}
	}

	// Blocks, each carrying out its part of the plan. A tensor stored in the cache (a kept range's
	// input or output, or a replaced range's output) must outlive this loop: it is not released.
	kept := map[*tensors.Tensor]bool{}
	release := func(t *tensors.Tensor) {
		if !kept[t] {
			t.MustFinalizeAll()
		}
	}
	inputs := map[hook.Span]*tensors.Tensor{}
	for b := 0; b < c.Depth; {
		if sk, ok := plan.SkipAt(b); ok {
			sc := opt.Cache.Span(sk.Cached())
			var next *tensors.Tensor
			if sk.Mode == hook.SkipResidual {
				add := m.exec("skip/residual", func(in []*Node) []*Node { return []*Node{Add(in[0], Sub(in[1], in[2]))} })
				next = add.MustExec(h, sc.Out, sc.In)[0]
			} else {
				next = sc.Out
				kept[next] = true
			}
			release(h)
			h = next
			if opt.Modules != nil {
				for sb := sk.From; sb <= sk.To; sb++ {
					for mi, mod := range c.Layout().Modules {
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
		next := m.runBlock(b, h, cond, plan.Blocks[b], opt)
		release(h)
		h = next
		for _, sp := range plan.Keep {
			if sp.To == b {
				opt.Cache.SetSpan(sp, inputs[sp], h)
				kept[h] = true
			}
		}
		if probe != nil {
			probe(fmt.Sprintf("block_%d", b), h)
		}
		b++
	}

	// Final layer and unpatchify.
	fin := m.exec(fmt.Sprintf("final/probe=%t", probe != nil), func(in []*Node) []*Node { return m.finalGraph(in, probe != nil) })
	outs = fin.MustExec(append([]any{h, cond}, m.w.finalArgs()...)...)
	if probe != nil {
		probe("final_tokens", outs[1])
		probe("final_adaln", outs[2])
		outs[1].MustFinalizeAll()
		outs[2].MustFinalizeAll()
	}
	release(h)
	cond.MustFinalizeAll()
	if probe != nil {
		probe("out", outs[0])
	}
	res := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].MustFinalizeAll()
	return res
}

// runBlock executes one block under its plan and updates the cache.
func (m *Model) runBlock(b int, h, cond *tensors.Tensor, bp hook.BlockPlan, opt Options) *tensors.Tensor {
	attn, mlp := bp.Modules[0], bp.Modules[1]
	sig := blockSig{attn: attn.Action, mlp: mlp.Action, attnMap: bp.AttnMap && attn.Action == hook.Full,
		vnorms: bp.ValueNorms && attn.Action == hook.Full, probe: opt.Probe != nil}
	// A predicted output enters the graph exactly as a cached one does.
	cached := func(module int, mp hook.ModulePlan) *tensors.Tensor {
		if mp.Action == hook.Predict {
			return mp.Value
		}
		return opt.Cache.Out(b, module)
	}
	if sig.attn == hook.Predict {
		sig.attn = hook.Reuse
	}
	if sig.mlp == hook.Predict {
		sig.mlp = hook.Reuse
	}
	if mlp.Action == hook.Partial && mlp.Tokens == nil && mlp.Choose != nil {
		mlp.Tokens = m.chooseTokens(b, h, cond, sig.attn, cached(0, attn), opt.Cache.Out(b, 1), mlp.Choose)
		bp.Modules[1].Tokens = mlp.Tokens // the caller's plan: FLOPs, traces and Observe see the choice
	}
	if mlp.Action == hook.Partial && len(mlp.Tokens[0]) == 0 {
		sig.mlp = hook.Reuse // k = 0 computes nothing (the FLOPs counter still bills LN and adaLN)
	}
	if mlp.Action == hook.Partial && len(mlp.Tokens[0]) == m.Tokens() {
		sig.mlp = hook.Full // every token fresh: same numbers, no gather
	}
	args := []any{h, cond}
	args = append(args, m.w.blockArgs(b)...)
	if sig.attn == hook.Reuse {
		args = append(args, cached(0, attn))
	}
	if sig.mlp == hook.Reuse || sig.mlp == hook.Partial {
		args = append(args, cached(1, mlp))
	}
	if sig.mlp == hook.Partial {
		idx, inv := partialIndices(mlp.Tokens, m.Tokens())
		args = append(args, idx, inv)
	}
	e := m.exec(sig.key(), func(in []*Node) []*Node { return m.blockGraph(in, sig) })
	outs := e.MustExec(args...)
	next, rest := outs[0], outs[1:]
	take := func() *tensors.Tensor { t := rest[0]; rest = rest[1:]; return t }
	keep := func(module int, t *tensors.Tensor) {
		if opt.Cache != nil {
			opt.Cache.SetOut(b, module, t)
		} else if opt.Probe == nil {
			t.MustFinalizeAll()
		}
	}
	var attnRaw, mlpRaw *tensors.Tensor
	if sig.attn == hook.Full {
		attnRaw = take()
	}
	if sig.mlp == hook.Full || sig.mlp == hook.Partial {
		mlpRaw = take()
	}
	if sig.attnMap {
		amap := take()
		if opt.Cache != nil {
			opt.Cache.SetAttnMap(b, amap)
		} else {
			amap.MustFinalizeAll()
		}
	}
	if sig.vnorms {
		vn := take()
		if opt.Cache != nil {
			opt.Cache.SetValueNorms(b, vn)
		} else {
			vn.MustFinalizeAll()
		}
	}
	if opt.Probe != nil {
		raw := func(t *tensors.Tensor, module int) *tensors.Tensor {
			if t != nil {
				return t
			}
			return cached(module, bp.Modules[module])
		}
		ada, gatedAttn, gatedMLP := take(), take(), take()
		opt.Probe(fmt.Sprintf("block%d_adaln", b), ada)
		opt.Probe(fmt.Sprintf("block%d_attn_raw", b), raw(attnRaw, 0))
		opt.Probe(fmt.Sprintf("block%d_attn", b), gatedAttn)
		opt.Probe(fmt.Sprintf("block%d_mlp_raw", b), raw(mlpRaw, 1))
		opt.Probe(fmt.Sprintf("block%d_mlp", b), gatedMLP)
		for _, t := range []*tensors.Tensor{ada, gatedAttn, gatedMLP} {
			t.MustFinalizeAll()
		}
	}
	if opt.Modules != nil {
		for mi, t := range []*tensors.Tensor{attnRaw, mlpRaw} {
			mp := bp.Modules[mi]
			fresh := 0
			switch {
			case mp.Action == hook.Full:
				fresh = m.Tokens()
			case mp.Action == hook.Partial && len(mp.Tokens) > 0:
				fresh = len(mp.Tokens[0])
			}
			if t == nil {
				t = cached(mi, mp)
			}
			opt.Modules(b, m.Layout().Modules[mi], mp.Action, fresh, t)
		}
	}
	if attnRaw != nil {
		keep(0, attnRaw)
		if opt.Cache == nil && opt.Probe != nil {
			attnRaw.MustFinalizeAll()
		}
	}
	if mlpRaw != nil {
		keep(1, mlpRaw)
		if opt.Cache == nil && opt.Probe != nil {
			mlpRaw.MustFinalizeAll()
		}
	}
	return next
}

// chooseTokens makes a deferred token choice for block b's MLP: it scores the MLP's input (the
// residual stream after attention, before norm2, where a partial step gathers its rows) in a
// small graph and asks the method's picker for the tokens.
func (m *Model) chooseTokens(b int, h, cond *tensors.Tensor, attn hook.Action, cachedAttn, cachedMLP *tensors.Tensor, ch *hook.Chooser) [][]int32 {
	args := append([]any{h, cond}, m.w.blockArgs(b)...)
	if attn == hook.Reuse {
		args = append(args, cachedAttn)
	}
	if ch.Score == hook.ScoreSimilarity {
		args = append(args, cachedMLP)
	}
	e := m.exec(fmt.Sprintf("score/%s/attn=%s", ch.Score, attn), func(in []*Node) []*Node { return m.scoreGraph(in, attn, ch.Score) })
	out := e.MustExec(args...)[0]
	flat := tensors.MustCopyFlatData[float32](out)
	out.MustFinalizeAll()
	B, N := h.Shape().Dimensions[0], m.Tokens()
	score := make([][]float32, B)
	for r := range score {
		score[r] = flat[r*N : (r+1)*N]
	}
	tokens, err := ch.Pick(score)
	if err == nil {
		err = hook.CheckTokens(tokens, B, N)
	}
	if err != nil {
		panic(fmt.Errorf("block %d mlp: token choice (%s score): %w", b, ch.Score, err))
	}
	return tokens
}

// scoreGraph computes the MLP input of a block as blockGraph does and scores its tokens. Inputs:
// x, c, the 10 block weights, the cached attention (Reuse) and the cached MLP (similarity).
// Output: [B, N], L2-normalised over tokens like F.normalize.
func (m *Model) scoreGraph(in []*Node, attn hook.Action, score hook.TokenScore) []*Node {
	x, cond, w, rest := in[0], in[1], in[2:12], in[12:]
	next := func() *Node { n := rest[0]; rest = rest[1:]; return n }
	mod := Split(linear(activations.Swish(cond), w[0], w[1]), -1, 6)
	x, _, _, _, _ = m.attnResidual(x, mod, w, attn, false, false, next)
	norm := func(v *Node) *Node { return Sqrt(ReduceSum(Square(v), -1)) }
	var s *Node
	switch score {
	case hook.ScoreNorm:
		s = norm(x)
	case hook.ScoreSimilarity:
		// F.cosine_similarity with eps 1e-8 on each norm, then 1 − cos.
		c := next()
		cos := Div(ReduceSum(Mul(x, c), -1), Mul(MaxScalar(norm(x), 1e-8), MaxScalar(norm(c), 1e-8)))
		s = OneMinus(cos)
	}
	return []*Node{Div(s, MaxScalar(Sqrt(ReduceAndKeep(Square(s), ReduceSum, -1)), 1e-12))}
}

// blockSig names one compiled variant of the block graph.
type blockSig struct {
	attn, mlp              hook.Action
	attnMap, vnorms, probe bool
}

func (s blockSig) key() string {
	return fmt.Sprintf("block/attn=%s/mlp=%s/map=%t/vnorm=%t/probe=%t", s.attn, s.mlp, s.attnMap, s.vnorms, s.probe)
}

// exec returns the compiled-graph family for a key, creating it once.
func (m *Model) exec(key string, fn func([]*Node) []*Node) *Exec {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.execs[key]; ok {
		return e
	}
	e := MustNewExec(m.backend, fn).WithName("dit/" + key)
	// Shapes vary only with batch and the token bucket of partial steps (bounded by tokenBucket).
	e.SetMaxCache(-1)
	m.execs[key] = e
	return e
}

// Backend is the backend the model's weights live on.
func (m *Model) Backend() backends.Backend { return m.backend }

// GraphCount reports how many graphs have been compiled (one per graph family and input shapes).
func (m *Model) GraphCount() (families int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.execs)
}

// ---- graphs -------------------------------------------------------------------------------

// embedGraph: inputs x, t_freq, y, then the embedder weights. Outputs tokens, c (and with probe
// t_emb, y_emb).
func (m *Model) embedGraph(in []*Node, probe bool) []*Node {
	x, tfreq, y := in[0], in[1], in[2]
	w := in[3:]
	convW, convB, pos, t0W, t0B, t2W, t2B, table := w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
	p := m.PatchSize
	// Patchify: the reference's conv with kernel = stride = p is a matmul over non-overlapping
	// patches; token n = row·grid + col, patch features ordered (c, u, v) like the OIHW kernel
	// (flattened to [C·p·p, D] at load). The pure-Go backend's convolution is ~30× slower.
	B, g := x.Shape().Dimensions[0], m.Grid()
	patches := TransposeAllAxes(Reshape(x, B, m.InChannels, g, p, g, p), 0, 2, 4, 1, 3, 5)
	h := linear(Reshape(patches, B, m.Tokens(), m.InChannels*p*p), convW, convB)
	h = Add(h, pos)

	tEmb := linear(activations.Swish(linear(tfreq, t0W, t0B)), t2W, t2B)
	yEmb := Gather(table, InsertAxes(y, -1))
	cond := Add(tEmb, yEmb)
	if probe {
		return []*Node{h, cond, tEmb, yEmb}
	}
	return []*Node{h, cond}
}

// blockGraph builds one adaLN-Zero block under the actions of sig. Inputs: x, c, the 10 block
// weights, then the cached attention (Reuse), the cached MLP (Reuse/Partial), and for Partial the
// padded token indices [B,K] and the inverse map [B,N].
func (m *Model) blockGraph(in []*Node, sig blockSig) []*Node {
	x, cond := in[0], in[1]
	w := in[2:12]
	rest := in[12:]
	next := func() *Node { n := rest[0]; rest = rest[1:]; return n }
	adaW, adaB, fc1W, fc1B, fc2W, fc2B := w[0], w[1], w[6], w[7], w[8], w[9]

	ada := linear(activations.Swish(cond), adaW, adaB)
	mod := Split(ada, -1, 6)
	shiftMLP, scaleMLP, gateMLP := mod[3], mod[4], mod[5]

	var outs []*Node
	x, attnOut, gatedAttn, attnMap, vnorms := m.attnResidual(x, mod, w, sig.attn, sig.attnMap, sig.vnorms, next)

	// MLP, per token: a partial step gathers the selected rows of the residual stream before norm2.
	mlpFn := func(h *Node) *Node {
		return linear(geluTanh(linear(modulate(layerNorm(h), shiftMLP, scaleMLP), fc1W, fc1B)), fc2W, fc2B)
	}
	var mlpOut *Node
	switch sig.mlp {
	case hook.Full:
		mlpOut = mlpFn(x)
	case hook.Reuse:
		mlpOut = next()
	case hook.Partial:
		cache, idx, inv := next(), next(), next()
		fresh := mlpFn(gatherRows(x, idx))                              // [B, K, D]
		mlpOut = gatherRows(Concatenate([]*Node{fresh, cache}, 1), inv) // fresh rows where selected, cache elsewhere
	}
	gatedMLP := Mul(expandTo(InsertAxes(gateMLP, 1), mlpOut), mlpOut)
	x = Add(x, gatedMLP)

	outs = append(outs, x)
	if sig.attn == hook.Full {
		outs = append(outs, attnOut)
	}
	if sig.mlp == hook.Full || sig.mlp == hook.Partial {
		outs = append(outs, mlpOut)
	}
	if sig.attnMap {
		outs = append(outs, attnMap)
	}
	if sig.vnorms {
		outs = append(outs, vnorms)
	}
	if sig.probe {
		outs = append(outs, ada, gatedAttn, gatedMLP)
	}
	return outs
}

// attnResidual is a block's first half, shared by the block and score graphs: the self-attention
// under its action (computed, or the cached or predicted output next() supplies) and its gated
// residual, which is the MLP's input. mod is the adaLN output split in six, w the block weights.
func (m *Model) attnResidual(x *Node, mod, w []*Node, attn hook.Action, wantMap, wantNorms bool, next func() *Node) (mlpIn, out, gated, amap, vnorms *Node) {
	switch attn {
	case hook.Full:
		out, amap, vnorms = m.attention(modulate(layerNorm(x), mod[0], mod[1]), w[2], w[3], w[4], w[5], wantMap, wantNorms)
	case hook.Reuse:
		out = next()
	}
	gated = Mul(expandTo(InsertAxes(mod[2], 1), out), out)
	return Add(x, gated), out, gated, amap, vnorms
}

// attention is timm's Attention as DiT uses it: fused qkv, q scaled before q·kᵀ, explicit softmax,
// heads concatenated head-major, then proj. With wantMap it also returns the head-averaged
// probabilities [B, N_query, N_key]; with wantNorms the value norms ‖v‖ [B, heads, N].
func (m *Model) attention(h, qkvW, qkvB, projW, projB *Node, wantMap, wantNorms bool) (out, amap, vnorms *Node) {
	d := h.Shape().Dimensions
	B, N, D := d[0], d[1], d[2]
	hd := D / m.Heads
	qkv := TransposeAllAxes(Reshape(linear(h, qkvW, qkvB), B, N, 3, m.Heads, hd), 2, 0, 3, 1, 4) // [3,B,H,N,hd]
	parts := Split(qkv, 0, 3)
	q, k, v := Squeeze(parts[0], 0), Squeeze(parts[1], 0), Squeeze(parts[2], 0)
	q = MulScalar(q, math.Pow(float64(hd), -0.5))
	probs := softmax(Einsum("bhqd,bhkd->bhqk", q, k))
	o := Einsum("bhqk,bhkd->bhqd", probs, v)
	o = Reshape(Transpose(o, 1, 2), B, N, D)
	if wantMap {
		amap = ReduceMean(probs, 1)
	}
	if wantNorms {
		vnorms = Sqrt(ReduceSum(Square(v), -1))
	}
	return linear(o, projW, projB), amap, vnorms
}

// finalGraph: inputs x, c and the final-layer weights; outputs the image [B, Cout, H, W] (and with
// probe the final tokens and the final adaLN output).
func (m *Model) finalGraph(in []*Node, probe bool) []*Node {
	x, cond := in[0], in[1]
	adaW, adaB, linW, linB := in[2], in[3], in[4], in[5]
	ada := linear(activations.Swish(cond), adaW, adaB)
	mod := Split(ada, -1, 2)
	tok := linear(modulate(layerNorm(x), mod[0], mod[1]), linW, linB) // [B, N, p·p·Cout]
	// Unpatchify: feature f = (u·p + v)·Cout + ch → pixel (ch, i·p+u, j·p+v).
	B, g, p, co := x.Shape().Dimensions[0], m.Grid(), m.PatchSize, m.OutChannels()
	img := TransposeAllAxes(Reshape(tok, B, g, g, p, p, co), 0, 5, 1, 3, 2, 4)
	img = Reshape(img, B, co, g*p, g*p)
	if probe {
		return []*Node{img, tok, ada}
	}
	return []*Node{img}
}

// linear is y = x·W + b with W stored [in, out] (transposed from PyTorch at load time).
func linear(x, w, b *Node) *Node {
	y := MatMul(x, w)
	return Add(y, expandTo(ExpandLeftToRank(b, y.Rank()), y))
}

// expandTo broadcasts x to the shape of like explicitly, so that the binary op that follows sees
// equal shapes. The pure-Go backend's binary ops and broadcasts walk a per-element index iterator
// whenever shapes differ (~10 % of a forward of the embedded default's model); there x is tiled
// with Concatenate, which copies blocks. Either way the arithmetic that follows is bit for bit
// the same; other backends (XLA) fuse broadcasts and get the plain op.
func expandTo(x, like *Node) *Node {
	dims := like.Shape().Dimensions
	if !strings.HasPrefix(x.Graph().Backend().Name(), "SimpleGo") {
		return BroadcastToDims(x, dims...)
	}
	for axis, d := range dims {
		if x.Shape().Dimensions[axis] == d {
			continue
		}
		// d copies along axis by doubling: the powers of two that sum to d, concatenated once.
		var pieces []*Node
		p := x
		for n := d; n > 0; n >>= 1 {
			if n&1 == 1 {
				pieces = append(pieces, p)
			}
			if n > 1 {
				p = Concatenate([]*Node{p, p}, axis)
			}
		}
		if len(pieces) == 1 {
			x = pieces[0]
		} else {
			x = Concatenate(pieces, axis)
		}
	}
	return x
}

// softmax over the last axis is GoMLX's Softmax (max-shifted exp over its sum), op for op, with
// the broadcasts explicit (see expandTo).
func softmax(x *Node) *Node {
	e := Exp(Sub(x, expandTo(ReduceAndKeep(x, ReduceMax, -1), x)))
	return Div(e, expandTo(ReduceAndKeep(e, ReduceSum, -1), e))
}

// geluTanh is GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))); x³ is
// two products because the pure-Go backend's generic power is several times slower.
func geluTanh(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(Mul(x, x), x), 0.044715)), math.Sqrt(2/math.Pi))
	return Mul(x, MulScalar(OnePlus(Tanh(inner)), 0.5))
}

// modulate is x·(1+scale) + shift, broadcast over tokens.
func modulate(x, shift, scale *Node) *Node {
	return Add(Mul(x, expandTo(OnePlus(InsertAxes(scale, 1)), x)), expandTo(InsertAxes(shift, 1), x))
}

// layerNorm has no affine parameters, eps 1e-6 and the biased variance, as the reference.
func layerNorm(x *Node) *Node {
	xc := Sub(x, expandTo(ReduceAndKeep(x, ReduceMean, -1), x))
	return Mul(xc, expandTo(Rsqrt(AddScalar(ReduceAndKeep(Square(xc), ReduceMean, -1), 1e-6)), xc))
}

// gatherRows picks rows idx [B, K] (int32) of x [B, N, D] per batch row → [B, K, D].
func gatherRows(x, idx *Node) *Node {
	g := idx.Graph()
	B, K := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	bIdx := BroadcastToDims(InsertAxes(Iota(g, shapes.Make(dtypes.Int32, B), 0), -1), B, K)
	return Gather(x, Stack([]*Node{bIdx, idx}, -1))
}

// ---- host-side helpers --------------------------------------------------------------------

// TimestepFeatures computes the reference's sinusoidal features in float32 arithmetic:
// f_k = exp(−ln(10000)·k/128), args = t·f_k, features = [cos(args), sin(args)].
func TimestepFeatures(t []float64) []float32 {
	const half = FreqEmbedSize / 2
	negLog := float32(-math.Log(10000))
	freqs := make([]float32, half)
	for k := range freqs {
		freqs[k] = float32(math.Exp(float64(negLog * float32(k) / half)))
	}
	out := make([]float32, len(t)*FreqEmbedSize)
	for b, tv := range t {
		tf := float32(tv)
		for k, f := range freqs {
			a := float64(tf * f)
			out[b*FreqEmbedSize+k] = float32(math.Cos(a))
			out[b*FreqEmbedSize+half+k] = float32(math.Sin(a))
		}
	}
	return out
}

// tokenBucket pads a partial token count so that the number of compiled shapes stays bounded
// (at most 16 buckets per token count n); padded rows are computed and then ignored.
func tokenBucket(k, n int) int {
	step := max(1, n/16)
	return min(n, (k+step-1)/step*step)
}

// partialIndices builds the padded index tensor [B, K'] and the inverse map [B, N] that sends each
// token either to its fresh row j (< K') or to its cached row K' + n.
func partialIndices(rows [][]int32, n int) (idx, inv *tensors.Tensor) {
	B, k := len(rows), len(rows[0])
	kp := tokenBucket(k, n)
	flatIdx := make([]int32, B*kp)
	flatInv := make([]int32, B*n)
	for b, row := range rows {
		for i := range n {
			flatInv[b*n+i] = int32(kp + i)
		}
		for j := range kp {
			src := row[min(j, k-1)] // padding repeats the last index; its result is never read
			flatIdx[b*kp+j] = src
		}
		for j, tok := range row {
			flatInv[b*n+int(tok)] = int32(j)
		}
	}
	return tensors.FromFlatDataAndDimensions(flatIdx, B, kp), tensors.FromFlatDataAndDimensions(flatInv, B, n)
}
