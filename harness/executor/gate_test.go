package executor

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// runStream carries a plan out on a given stream [2, 16, 2].
func runStream(t *testing.T, e *Executor, p *hook.Plan, c *hook.Cache, x []float32) []float32 {
	t.Helper()
	if err := p.Validate(toyLayout, c, 2); err != nil {
		t.Fatal(err)
	}
	var out []float32
	if err := gx.Catch(func() {
		h, cached := e.Blocks(tensors.FromFlatDataAndDimensions(append([]float32(nil), x...), 2, 16, 2), nil, p, hook.Options{Plan: p, Cache: c})
		out = tensors.MustCopyFlatData[float32](h)
		if !cached {
			h.MustFinalizeAll()
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// stream is x[r][n][ch] = scale_r · (n+1)/16.
func stream(scale0, scale1 float32) []float32 {
	x := make([]float32, 2*16*2)
	for r, s := range []float32{scale0, scale1} {
		for i := range 32 {
			x[r*32+i] = s * float32(i/2+1) / 16
		}
	}
	return x
}

// The toy's two blocks map x to 36x + 7 (attention 2x, MLP x+1, residuals add), so a gated
// stack's residual is 35x + 7. A gate over both blocks with TeaCache's statistic (the toy's first
// module input is x itself) skips the rows whose input moved less than 10 %: a skipped row gets
// its new input plus the residual stored when it last ran, the others are computed anew.
func TestGatePerRow(t *testing.T) {
	e := newToy(t)
	c := hook.NewCache(toyLayout)
	var seen [][]float64
	plan := func(perBatch bool) *hook.Plan {
		p := hook.FullPlan(toyLayout)
		p.Gate = &hook.Gate{Span: hook.Span{From: 0, To: 1}, Stat: hook.StatModulatedInput, PerBatch: perBatch,
			Decide: func(stat []float64) ([]bool, error) {
				seen = append(seen, stat)
				out := make([]bool, len(stat))
				for i, s := range stat {
					out[i] = s < 0.1
				}
				return out, nil
			}}
		return p
	}
	x1 := stream(1, 1)
	p := plan(false)
	got := runStream(t, e, p, c, x1)
	for i, v := range got {
		if want := 36*x1[i] + 7; math.Abs(float64(v-want)) > 1e-5 {
			t.Fatalf("first call [%d] = %g, want %g (computed)", i, v, want)
		}
	}
	if !math.IsInf(seen[0][0], 1) || p.Gate.Ran(2) != 2 {
		t.Fatalf("first call: statistics %v (want +Inf: no reference), ran %d rows", seen[0], p.Gate.Ran(2))
	}
	x2 := stream(1.01, 2) // row 0 moves 1 %, row 1 doubles
	p = plan(false)
	got = runStream(t, e, p, c, x2)
	if s := seen[1]; math.Abs(s[0]-0.01) > 1e-4 || math.Abs(s[1]-1) > 1e-4 {
		t.Fatalf("relative L1 per row %v, want [0.01 1]", s)
	}
	if !p.Gate.Skipped[0] || p.Gate.Skipped[1] {
		t.Fatalf("skipped %v, want [true false]", p.Gate.Skipped)
	}
	for i, v := range got {
		want := 36*x2[i] + 7 // row 1: computed
		if i < 32 {
			want = x2[i] + 35*x1[i] + 7 // row 0: new input + the residual of call 1
		}
		if math.Abs(float64(v-want)) > 1e-5 {
			t.Fatalf("second call [%d] = %g, want %g", i, v, want)
		}
	}
	// Row 1's residual is now 35·x2 + 7; row 0 keeps call 1's. Pooled, one decision for both.
	x3 := stream(1.01, 2)
	p = plan(true)
	got = runStream(t, e, p, c, x3)
	if len(seen[2]) != 1 || seen[2][0] != 0 || !p.Gate.Skipped[0] || !p.Gate.Skipped[1] {
		t.Fatalf("pooled statistic %v, skipped %v: want one zero statistic and both rows skipped", seen[2], p.Gate.Skipped)
	}
	for i, v := range got {
		want := x3[i] + 35*x2[i] + 7
		if i < 32 {
			want = x3[i] + 35*x1[i] + 7
		}
		if math.Abs(float64(v-want)) > 1e-5 {
			t.Fatalf("third call [%d] = %g, want %g", i, v, want)
		}
	}
	f := hook.ExecutedFLOPs(flopsPerRow{}, p, 2)
	if f[0] != 0 || f[1] != 0 {
		t.Errorf("executed FLOPs of a skipped range %v, want 0", f)
	}
}

// flopsPerRow bills 10 FLOPs per row and block.
type flopsPerRow struct{}

func (flopsPerRow) BlockFLOPs(p *hook.Plan, rows int) []int64 {
	out := make([]int64, len(p.Blocks))
	for i := range out {
		out[i] = int64(10 * rows)
	}
	return out
}

// A residual gate (FBCache) measures the residual of the blocks before its range: block 0 maps
// x to 6x + 1, a residual of 5x + 1; the range (block 1) is skipped where that residual moved
// less than the threshold, and its reference is replaced only on the rows that ran.
func TestGateResidual(t *testing.T) {
	e := newToy(t)
	c := hook.NewCache(toyLayout)
	var stats []float64
	plan := func(thresh float64) *hook.Plan {
		p := hook.FullPlan(toyLayout)
		p.Gate = &hook.Gate{Span: hook.Span{From: 1, To: 1}, Stat: hook.StatResidual,
			Decide: func(stat []float64) ([]bool, error) {
				stats = stat
				return []bool{stat[0] < thresh, stat[1] < thresh}, nil
			}}
		return p
	}
	runStream(t, e, plan(0.1), c, stream(1, 1))
	x2 := stream(1.01, 2)
	p := plan(0.1)
	got := runStream(t, e, p, c, x2)
	// Residual of block 0: 5x + 1 per element; its relative L1 change for row 0 is Σ 5·0.01x / Σ (5x + 1).
	var num, den float64
	for i := range 32 {
		x := float64(stream(1, 1)[i])
		num += 5 * 0.01 * x
		den += 5*x + 1
	}
	if math.Abs(stats[0]-num/den) > 1e-5 || stats[1] < 0.5 {
		t.Fatalf("statistics %v, want [%g, ≈0.9]", stats, num/den)
	}
	x1 := stream(1, 1)
	for i, v := range got {
		h := 6*x2[i] + 1 // after block 0
		want := 6*h + 1  // block 1 computed (row 1)
		if i < 32 {
			h1 := 6*x1[i] + 1 // row 0: block 1's residual from call 1 is 5·h1 + 1
			want = h + 5*h1 + 1
		}
		if math.Abs(float64(v-want)) > 1e-4 {
			t.Fatalf("[%d] = %g, want %g", i, v, want)
		}
	}
	// A skipping row without a stored residual is refused.
	c2 := hook.NewCache(toyLayout)
	p = hook.FullPlan(toyLayout)
	p.Gate = &hook.Gate{Span: hook.Span{From: 1, To: 1}, Stat: hook.StatResidual,
		Decide: func(stat []float64) ([]bool, error) { return []bool{true, true}, nil }}
	if err := gx.Catch(func() {
		h, _ := e.Blocks(tensors.FromFlatDataAndDimensions(stream(1, 1), 2, 16, 2), nil, p, hook.Options{Plan: p, Cache: c2})
		h.MustFinalizeAll()
	}); err == nil {
		t.Error("a skip with no stored residual was carried out")
	}
}
