package methods

import (
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
	"github.com/cachebench/cachebench/models/dit"
)

// fullSteps replays a TaylorSeer run without a network and returns its full steps.
func taylorFullSteps(t *testing.T, n, steps int) []int {
	t.Helper()
	env := Env{Layout: smallLayout, Steps: steps, Rows: 2}
	m, _, err := New("taylorseer", map[string]string{"N": strconv.Itoa(n)}, env)
	if err != nil {
		t.Fatal(err)
	}
	var full []int
	for call := range steps {
		step := steps - 1 - call
		p, err := m.Plan(call, step)
		if err != nil {
			t.Fatal(err)
		}
		switch a := p.Blocks[0].Modules[1]; a.Action {
		case hook.Full:
			full = append(full, step)
		case hook.Predict:
			if a.Series == nil {
				t.Fatalf("step %d: a prediction without a series", step)
			}
		default:
			t.Fatalf("step %d: action %s", step, a.Action)
		}
		if err := m.Observe(call, step, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	return full
}

// TaylorSeer-DiT's rule: the first two steps, then every N-th by the counter. N = 3 on DDIM-50: 49, 48, 45,
// 42, …, 0 (18 steps, the FORA set); N = 4: 49, 48, 44, 40, …, 0; N = 1: every step.
func TestTaylorSeerFullSteps(t *testing.T) {
	want := []int{49, 48}
	for s := 45; s >= 0; s -= 3 {
		want = append(want, s)
	}
	if got := taylorFullSteps(t, 3, 50); !slices.Equal(got, want) || len(got) != 18 {
		t.Errorf("N=3: full at %v (%d), want %v (18)", got, len(got), want)
	}
	want = []int{49, 48}
	for s := 44; s >= 0; s -= 4 {
		want = append(want, s)
	}
	if got := taylorFullSteps(t, 4, 50); !slices.Equal(got, want) {
		t.Errorf("N=4: full at %v, want %v", got, want)
	}
	if got := taylorFullSteps(t, 1, 10); len(got) != 10 {
		t.Errorf("N=1: full at %v, want every step", got)
	}
}

// The factor recursion and the prediction on hand-computed cases, run on the backend: S = 10,
// N = 3 → full at 9, 8, 5, 2 (distances −1, −3, −3), predictions at 7, 6, 4, 3, 1, 0.
//
// Element 0 holds f(s) = s², element 1 f(s) = 2 − 3s (the attention holds −f). By hand, for s²:
//
//	after 9: F = [81]
//	after 8: F = [64, (64−81)/(−1) = 17]
//	after 5: F = [25, (25−64)/(−3) = 13, (13−17)/(−3) = 4/3]
//	after 2: F = [4, (4−25)/(−3) = 7, (7−13)/(−3) = 2, (2 − 4/3)/(−3) = −2/9]
//	f̂(1) = 4 + 7·(−1) + 2·1/2 − (2/9)·(−1)/6 = −2 + 1/27,  f̂(0) = 4 − 14 + 4 + (2/9)·8/6 = −6 + 8/27
//
// so a quadratic sampled at full steps is not extrapolated exactly: the factors are backward
// differences over the (uneven) full-step spacing, not derivatives. A linear output is.
func TestTaylorSeerFactorsAndPrediction(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	l := hook.Layout{Depth: 1, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 1, GridH: 1, GridW: 1, Hidden: 2, Heads: 1}
	ex := executor.New(b, "identity", identityNet{l})
	quad := func(s float64) float64 { return s * s }
	lin := func(s float64) float64 { return 2 - 3*s }
	want := map[int][2]float64{ // hand-computed predictions (order 3): quadratic, linear
		7: {64 - 17, lin(7)},
		6: {64 - 2*17, lin(6)},
		4: {25 - 13 + (4.0/3)/2, lin(4)},
		3: {25 - 2*13 + (4.0/3)*4/2, lin(3)},
		1: {-2 + 1.0/27, lin(1)},
		0: {-6 + 8.0/27, lin(0)},
	}
	wantFactors := map[int][]float64{9: {81}, 8: {64, 17}, 5: {25, 13, 4.0 / 3}, 2: {4, 7, 2, -2.0 / 9}}
	for _, order := range []int{3, 1, 0} {
		m, _, err := New("taylorseer", map[string]string{"N": "3", "order": strconv.Itoa(order)}, Env{Layout: l, Steps: 10, Rows: 1})
		if err != nil {
			t.Fatal(err)
		}
		c := hook.NewCache(l)
		var lastFull [2]float64
		for call := range 10 {
			step := 9 - call
			p, err := m.Plan(call, step)
			if err != nil {
				t.Fatal(err)
			}
			s := float64(step)
			// The identity net outputs −x from its attention and x from its MLP: x carries f(s).
			got := make([][]float32, 2)
			h := tensors.FromFlatDataAndDimensions([]float32{float32(quad(s)), float32(lin(s))}, 1, 1, 2)
			if err := gx.Catch(func() {
				out, cached := ex.Blocks(h, nil, p, hook.Options{Plan: p, Cache: c, Modules: func(_ int, mod hook.Module, _ hook.Action, _ int, v *tensors.Tensor) {
					got[mod] = tensors.MustCopyFlatData[float32](v)
				}})
				if !cached {
					out.MustFinalizeAll()
				}
			}); err != nil {
				t.Fatalf("order %d step %d: %v", order, step, err)
			}
			if p.Blocks[0].Modules[0].Action == hook.Full {
				lastFull = [2]float64{quad(s), lin(s)}
			} else {
				for i, sign := range []float32{-1, 1} {
					exp := want[step]
					switch order {
					case 1: // linear extrapolation from the last two full steps: exact for the linear element
						exp[0] = math.NaN()
					case 0: // the last full output
						exp = lastFull
					}
					for e := range 2 {
						if !math.IsNaN(exp[e]) && math.Abs(float64(got[i][e]*sign)-exp[e]) > 1e-4*max(1, math.Abs(exp[e])) {
							t.Errorf("order %d step %d module %d element %d: predicted %g, want %g", order, step, i, e, got[i][e]*sign, exp[e])
						}
					}
				}
				continue
			}
			fs := c.History(0, 1)
			wf := wantFactors[step]
			if len(fs) != min(len(wf), order+1) {
				t.Fatalf("order %d after step %d: %d factors, want %d", order, step, len(fs), min(len(wf), order+1))
			}
			if order == 3 {
				for i, f := range fs {
					if got := tensors.MustCopyFlatData[float32](f)[0]; math.Abs(float64(got)-wf[i]) > 1e-5*max(1, math.Abs(wf[i])) {
						t.Errorf("after step %d: F_%d = %g, want %g", step, i, got, wf[i])
					}
				}
			}
		}
		c.Reset()
		if len(c.History(0, 0)) != 0 {
			t.Errorf("order %d: history kept after the cache was reset", order)
		}
	}
}

// identityNet is a one-block net whose attention outputs −x and MLP x (residuals leave x as is).
type identityNet struct{ l hook.Layout }

func (n identityNet) Layout() hook.Layout                     { return n.l }
func (n identityNet) BlockWeights(int) []*tensors.Tensor      { return nil }
func (n identityNet) Block(_, _ []*graph.Node) executor.Block { return identityBlock{} }

type identityBlock struct{}

func (identityBlock) Module(m int, x, _ *graph.Node, _ hook.TokenScore) (*graph.Node, *graph.Node) {
	if m == 0 {
		return graph.Neg(x), nil
	}
	return graph.Add(x, graph.ZerosLike(x)), nil
}
func (identityBlock) Residual(_ int, x, out *graph.Node) (*graph.Node, *graph.Node) { return x, out }
func (identityBlock) Probes() []executor.Named                                      { return nil }
func (identityBlock) Input(x *graph.Node) *graph.Node                               { return x }

// FLOPs of TaylorSeer N=3 on DiT-XL/2 DDIM-50: the FORA step set, 2.77×. A Taylor block is billed
// its adaLN only (TaylorSeer's counter runs no LayerNorm there).
func TestTaylorSeerFLOPs(t *testing.T) {
	c, err := dit.Preset("DiT-XL/2", 256)
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Layout: c.Layout(), Steps: 50, Rows: 2}
	base, _, _ := New("none", nil, env)
	bt, err := DryRun(base, env, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := New("taylorseer", map[string]string{"N": "3"}, env)
	tr, err := DryRun(m, env, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	B, C := int64(2), int64(1152)
	full := bt.TotalFLOPs / 50
	want := 18*full + 32*28*(B*C+6*B*C*C)
	speedup := float64(bt.TotalFLOPs) / float64(tr.TotalFLOPs)
	t.Logf("TaylorSeer N=3: %.6f T, %.4fx", float64(tr.TotalFLOPs)/1e12, speedup)
	if tr.TotalFLOPs != want || math.Round(speedup*100) != 277 {
		t.Errorf("TaylorSeer N=3: %d FLOPs (%.4fx), want %d (2.77x)", tr.TotalFLOPs, speedup, want)
	}
}
