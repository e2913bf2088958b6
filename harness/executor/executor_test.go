package executor

import (
	"math"
	"slices"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// toyNet is a two-block model small enough to check by hand: the "attention" doubles its input
// (side information: the token sums as attention received, and |x| per channel as two heads'
// value norms), the "MLP" adds one, and residuals add. It has no weights.
type toyNet struct{ l hook.Layout }

func (n toyNet) Layout() hook.Layout                { return n.l }
func (n toyNet) BlockWeights(int) []*tensors.Tensor { return nil }
func (n toyNet) Block(_, _ []*Node) Block           { return toyBlock{} }

type toyBlock struct{}

func (toyBlock) Module(m int, x, rows *Node, side hook.TokenScore) (out, info *Node) {
	if rows != nil {
		x = GatherRows(x, rows)
	}
	if m == 1 {
		return OnePlus(x), nil
	}
	switch side {
	case hook.ScoreAttention:
		info = ReduceSum(x, -1)
	case hook.ScoreValueNorm:
		info = Transpose(Abs(x), 1, 2) // [B, 2 heads, N]
	}
	return MulScalar(x, 2), info
}
func (toyBlock) Residual(_ int, x, out *Node) (*Node, *Node) { return Add(x, out), out }
func (toyBlock) Probes() []Named                             { return nil }
func (toyBlock) Input(x *Node) *Node                         { return x }

var toyLayout = hook.Layout{Depth: 2, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 16, GridH: 4, GridW: 4, Hidden: 2, Heads: 2}

func newToy(t *testing.T) *Executor {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	return New(b, "toy", toyNet{toyLayout})
}

// run carries a plan out on the toy stream x[r][n] = (r+1)·(n+1)/16 in both channels.
func run(t *testing.T, e *Executor, p *hook.Plan, c *hook.Cache, opt hook.Options) []float32 {
	t.Helper()
	const rows = 2
	x := make([]float32, rows*16*2)
	for r := range rows {
		for n := range 16 {
			x[(r*16+n)*2], x[(r*16+n)*2+1] = float32(r+1)*float32(n+1)/16, float32(r+1)*float32(n+1)/16
		}
	}
	if err := p.Validate(toyLayout, c, rows); err != nil {
		t.Fatal(err)
	}
	opt.Plan, opt.Cache = p, c
	var out []float32
	if err := gx.Catch(func() {
		h, cached := e.Blocks(tensors.FromFlatDataAndDimensions(x, rows, 16, 2), nil, p, opt)
		out = tensors.MustCopyFlatData[float32](h)
		if !cached {
			h.MustFinalizeAll()
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func stale(c *hook.Cache, b, m int) []float32 {
	if c.Stale(b, m) == nil {
		return make([]float32, 32)
	}
	return tensors.MustCopyFlatData[float32](c.Stale(b, m))
}

// Staleness counters on the device: a full module resets them, a partial one ages every token
// and zeroes the recomputed ones, a skipped block (DuCa's aggressive step) leaves them alone; the
// tokens chosen follow the base score of the last refreshing attention, plus staleness.
func TestStalenessAndChoice(t *testing.T) {
	for _, device := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "graph"}[device], func(t *testing.T) { stalenessAndChoice(t, device) })
	}
}

func stalenessAndChoice(t *testing.T, device bool) {
	e := newToy(t)
	run := func(t *testing.T, e *Executor, p *hook.Plan, c *hook.Cache, opt hook.Options) []float32 {
		opt.DeviceChoice = device
		return run(t, e, p, c, opt)
	}
	c := hook.NewCache(toyLayout)
	defer c.Reset()
	full := hook.FullPlan(toyLayout)
	full.Keep = []hook.Span{{From: 0, To: 1}}
	for b := range full.Blocks {
		full.Blocks[b].Refresh = hook.ScoreAttention
	}
	run(t, e, full, c, hook.Options{})
	// Attention received = the token sums, which grow with the token index: normalised.
	base := tensors.MustCopyFlatData[float32](c.Base(0))
	var ss float64
	for n := range 16 {
		ss += math.Pow(float64(2*(n+1))/16, 2)
	}
	for n := range 16 {
		if want := float64(2*(n+1)) / 16 / math.Sqrt(ss); math.Abs(float64(base[n])-want) > 1e-6 {
			t.Fatalf("base score of token %d: %g, want %g", n, base[n], want)
		}
	}
	base1 := tensors.MustCopyFlatData[float32](c.Base(1)) // block 1 sees 6x+1: a flatter score
	partial := func(k int) *hook.Plan {
		p := hook.FullPlan(toyLayout)
		for b := range p.Blocks {
			p.Blocks[b].Modules[0].Action = hook.Reuse
			p.Blocks[b].Modules[1] = hook.ModulePlan{Action: hook.Partial,
				Select: &hook.Selection{K: k, Score: hook.ScoreAttention, StaleWeight: 0.25, StaleNorm: 3}}
		}
		return p
	}
	p := partial(4)
	var reported [][]int32
	run(t, e, p, c, hook.Options{Tokens: true, Choices: func(b int, m hook.Module, _ [][]float32, own [][]int32) {
		if b == 1 {
			reported = own
		}
	}})
	// The largest base scores win: tokens 15, 14, 13, 12 in both rows.
	want := []int32{15, 14, 13, 12}
	for r, row := range p.Blocks[1].Modules[1].Tokens {
		if !slices.Equal(row, want) || !slices.Equal(reported[r], want) {
			t.Fatalf("row %d: chose %v (reported %v), want %v", r, row, reported[r], want)
		}
	}
	s := stale(c, 1, 1)
	for r := range 2 {
		for n := range 16 {
			w := float32(1)
			if n >= 12 {
				w = 0
			}
			if s[r*16+n] != w {
				t.Fatalf("row %d token %d: staleness %g after the first partial step, want %g", r, n, s[r*16+n], w)
			}
		}
	}
	// Aged tokens gain 0.25·stale/3: three partial steps with k = 0 age everything.
	for range 3 {
		run(t, e, partial(0), c, hook.Options{})
	}
	before := stale(c, 1, 1)
	skip := hook.FullPlan(toyLayout)
	skip.Skips = []hook.SpanSkip{{Span: hook.Span{From: 0, To: 1}, Mode: hook.SkipReplace}}
	for b := range skip.Blocks {
		for m := range skip.Blocks[b].Modules {
			skip.Blocks[b].Modules[m].Action = hook.Skip
		}
	}
	run(t, e, skip, c, hook.Options{})
	if got := stale(c, 1, 1); !slices.Equal(got, before) {
		t.Fatalf("a skipped block moved the counters from %v to %v", before, got)
	}
	if before[0] != 4 || before[15] != 3 {
		t.Fatalf("counters %v after 1 + 3 partial steps, want 4 for unchosen, 3 for chosen tokens", before)
	}
	p = partial(4)
	run(t, e, p, c, hook.Options{Tokens: true})
	// Scores now: base_n + 0.25·4/3 for n < 12, base_n + 0.25 for n ≥ 12.
	scoreOf := func(n int) float64 {
		st := 4.0
		if n >= 12 {
			st = 3
		}
		return float64(base1[n]) + 0.25*st/3
	}
	order := make([]int32, 16)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		switch sa, sb := scoreOf(int(a)), scoreOf(int(b)); {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	if !slices.Equal(order[:4], []int32{11, 15, 10, 14}) {
		t.Fatalf("host order %v: the ageing no longer interleaves old and fresh tokens", order[:4])
	}
	for r, row := range p.Blocks[1].Modules[1].Tokens[:1] {
		if !slices.Equal(row, order[:4]) {
			t.Fatalf("row %d: chose %v after ageing, want %v", r, row, order[:4])
		}
	}
	run(t, e, full, c, hook.Options{})
	if c.Stale(1, 1) != nil {
		t.Fatal("a full step left staleness counters")
	}
}

// A partial module computes its chosen tokens and keeps the cache elsewhere; planned tokens give
// the same result as the same tokens chosen on the device.
func TestPartialMergesCache(t *testing.T) {
	e := newToy(t)
	c1, c2 := hook.NewCache(toyLayout), hook.NewCache(toyLayout)
	defer c1.Reset()
	defer c2.Reset()
	full := hook.FullPlan(toyLayout)
	for b := range full.Blocks {
		full.Blocks[b].Refresh = hook.ScoreAttention
	}
	run(t, e, full, c1, hook.Options{})
	run(t, e, full, c2, hook.Options{})
	chosen := hook.FullPlan(toyLayout)
	planned := hook.FullPlan(toyLayout)
	chosen.Blocks[0].Modules[1] = hook.ModulePlan{Action: hook.Partial, Select: &hook.Selection{K: 3, Score: hook.ScoreAttention, StaleNorm: 1}}
	out1 := run(t, e, chosen, c1, hook.Options{Tokens: true})
	planned.Blocks[0].Modules[1] = hook.ModulePlan{Action: hook.Partial, Tokens: chosen.Blocks[0].Modules[1].Tokens}
	out2 := run(t, e, planned, c2, hook.Options{})
	if !slices.Equal(out1, out2) {
		t.Fatal("device choice and the same tokens planned differ")
	}
	// Block 0's MLP cache: recomputed rows (15, 14, 13) hold the new input + 1, the others the
	// full step's value (the same here, as the toy input does not change): compare with a run that
	// recomputes everything.
	ref := hook.NewCache(toyLayout)
	defer ref.Reset()
	want := run(t, e, hook.FullPlan(toyLayout), ref, hook.Options{})
	if !slices.Equal(out1, want) {
		t.Fatal("a partial step on an unchanged input differs from the full step")
	}
}

// The value-norm score: u_i = Σ_h (1 − ‖v_{i,h}‖), L2-normalised, small norms first.
func TestValueNormBase(t *testing.T) {
	e := newToy(t)
	c := hook.NewCache(toyLayout)
	defer c.Reset()
	full := hook.FullPlan(toyLayout)
	full.Blocks[0].Refresh = hook.ScoreValueNorm
	run(t, e, full, c, hook.Options{})
	got := tensors.MustCopyFlatData[float32](c.Base(0))
	for r := range 2 {
		u := make([]float64, 16)
		var ss float64
		for n := range 16 {
			v := float64(float32(r+1) * float32(n+1) / 16)
			u[n] = 2 * (1 - v)
			ss += u[n] * u[n]
		}
		for n := range 16 {
			if want := u[n] / math.Sqrt(ss); math.Abs(float64(got[r*16+n])-want) > 1e-6 {
				t.Fatalf("row %d token %d: %g, want %g", r, n, got[r*16+n], want)
			}
		}
	}
	if c.Base(1) != nil {
		t.Error("block 1 refreshed no score but holds one")
	}
}

// The grid bonus and the rank on the device against hand-computed cases: row 0 scores token i
// (i+1)/100, row 1 (16−i)/100; the best token of each 2×2 cell gains β. With ToCa's β = 0.6 the
// cell winners 15, 13 come first, then 14 (0.15) and 12 (0.13) beat 7 (0.128); DuCa's β = 0.8
// lifts 7 to 0.144.
func TestChooseByHand(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	score := [][]float32{make([]float32, 16), make([]float32, 16)}
	for i := range 16 {
		score[0][i], score[1][i] = float32(i+1)/100, float32(16-i)/100
	}
	for beta, want := range map[float32][][]int32{0.6: {{15, 13, 14, 12}, {0, 2, 1, 3}}, 0.8: {{15, 13, 14, 7}, {0, 2, 1, 8}}} {
		scored, fresh, err := Choose(b, toyLayout, hook.Selection{K: 4, Grid: 2, Beta: beta}, score)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(fresh, want, slices.Equal) {
			t.Errorf("β %g: chose %v, want %v", beta, fresh, want)
		}
		if w := score[0][15] + score[0][15]*beta; scored[0][15] != w || scored[0][14] != score[0][14] {
			t.Errorf("β %g: bonus of token 15 %g (want %g), token 14 %g (want unchanged)", beta, scored[0][15], w, scored[0][14])
		}
	}
	// Exact ties go to the lower index, as a stable sort would.
	tie := [][]float32{make([]float32, 16)}
	if _, fresh, err := Choose(b, toyLayout, hook.Selection{K: 3}, tie); err != nil || !slices.Equal(fresh[0], []int32{0, 1, 2}) {
		t.Errorf("ties: chose %v (%v), want [0 1 2]", fresh, err)
	}
}

// Compilation is timed once per new shape and kept out of execution.
func TestCompileTimedOnce(t *testing.T) {
	e := newToy(t)
	c := hook.NewCache(toyLayout)
	defer c.Reset()
	run(t, e, hook.FullPlan(toyLayout), c, hook.Options{})
	fams, graphs := e.Compiled()
	ct := e.CompileTime()
	if fams == 0 || graphs == 0 || ct <= 0 {
		t.Fatalf("after one call: %d families, %d graphs, %v compiling", fams, graphs, ct)
	}
	run(t, e, hook.FullPlan(toyLayout), c, hook.Options{})
	if f2, g2 := e.Compiled(); f2 != fams || g2 != graphs || e.CompileTime() != ct {
		t.Errorf("a repeated call compiled again: %d→%d families, %d→%d graphs", fams, f2, graphs, g2)
	}
}
