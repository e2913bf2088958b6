package methods_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
)

// spyModel lets a test look at every model call of a sampling run.
type spyModel struct {
	*dit.Model
	forward func(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error)
}

func (s *spyModel) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	return s.forward(x, t, y, opt)
}

// tinyCall is what a test sees of one model call.
type tinyCall struct {
	call, step int
	plan       *hook.Plan
	x          []float32 // the model input
	t          []float64
	y          []int64
	cache      *hook.Cache
}

// runTiny samples the golden caching setup (testdata/caching: tiny DiT, 4 heads, DDIM "50",
// CFG 1.5, labels and noise of the golden traces) under a method. Every plan is validated before
// its call; before/after see each call around the real forward. It returns the method and the
// worst relative distance of its states x_k to the uncached golden run.
func runTiny(t *testing.T, method string, params map[string]string, before, after func(c tinyCall, m *dit.Model, out []float32)) (methods.Method, float64) {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.Load(b, golden.Path("caching/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "caching/baseline.safetensors")
	sched, err := diffusion.NewSchedule(1000, "50")
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layout()
	pol, _, err := methods.New(method, params, methods.Env{Layout: l, Steps: 50, Rows: 4, Samples: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	cache := hook.NewCache(l)
	defer cache.Reset()
	call := 0
	spy := &spyModel{Model: m, forward: func(x []float32, ts []float64, y []int64, opt hook.Options) ([]float32, error) {
		tc := tinyCall{call: call, step: 49 - call, plan: opt.Plan, x: x, t: ts, y: y, cache: opt.Cache}
		call++
		if err := opt.Plan.Validate(l, opt.Cache, len(ts)); err != nil {
			return nil, fmt.Errorf("plan of call %d does not validate: %w", tc.call, err)
		}
		if before != nil {
			before(tc, m, nil)
		}
		out, err := m.Forward(x, ts, y, opt)
		if err != nil {
			return nil, err
		}
		if after != nil {
			after(tc, m, out)
		}
		return out, nil
	}}
	y := golden.I64(t, g, "y")
	var worst float64
	_, err = harness.Sample(context.Background(), spy, harness.Request{
		Sampler: diffusion.DDIM, Schedule: sched, CFGScale: 1.5, XInit: golden.F32(t, g, "x_init"), Labels: y[:2],
		Policy: pol, Cache: cache, Tokens: true,
		OnStep: func(s harness.StepInfo) error {
			for i, v := range s.X {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("call %d: x[%d] = %v", s.Call, i, v)
				}
			}
			want := golden.F32(t, g, fmt.Sprintf("x_%03d", s.Call))
			worst = max(worst, golden.RelToMax(s.X[:len(want)], want))
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if call != 50 {
		t.Fatalf("%d model calls, want 50", call)
	}
	t.Logf("%s %v: worst x_k distance to the uncached run %.3g", method, params, worst)
	return pol, worst
}

// DuCa end to end (faithful, README setting): aggressive calls run no block at all (or only a full
// layer 0 at step 32), and their output — the final layer on the stored stack output — differs
// from a full recompute but stays close to it.
func TestDuCaTiny(t *testing.T) {
	var aggressive, l0 int
	blocksRun := func(m *dit.Model, c tinyCall) ([]string, []float32) {
		var names []string
		opt := hook.Options{Plan: c.plan, Cache: c.cache, Probe: func(name string, _ *tensors.Tensor) {
			if strings.HasPrefix(name, "block_") {
				names = append(names, name)
			}
		}}
		out, err := m.Forward(c.x, c.t, c.y, opt)
		if err != nil {
			t.Fatal(err)
		}
		return names, out
	}
	chosen := map[string][][]int32{} // the tokens of the last block's conservative MLP, all calls
	for _, score := range []string{"attention", "vnorm", "random"} {
		hasBase := false
		_, worst := runTiny(t, "duca", map[string]string{"N": "3", "ratio": "0.05", "score": score}, func(c tinyCall, m *dit.Model, _ []float32) {
			if len(c.plan.Skips) == 0 {
				if !slices.Equal(c.plan.Keep, []hook.Span{{From: 0, To: 3}}) {
					t.Errorf("call %d: keeps %v, want the whole stack", c.call, c.plan.Keep)
				}
				return
			}
			if score != "attention" {
				return // the skip checks below do not depend on the score
			}
			// Run the planned call once more with probes (a replayed aggressive call changes no cache
			// but layer 0's, which a full layer 0 recomputes identically).
			names, out := blocksRun(m, c)
			wantNames := []string(nil)
			if c.step == 32 {
				wantNames = []string{"block_0"}
				l0++
			} else {
				aggressive++
			}
			if !slices.Equal(names, wantNames) {
				t.Errorf("call %d (step %d, aggressive): blocks run %v, want %v", c.call, c.step, names, wantNames)
			}
			full, err := m.Forward(c.x, c.t, c.y, hook.Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := golden.RelToMax(out, full)
			t.Logf("call %d (step %d): aggressive output at %.3g of a full recompute", c.call, c.step, d)
			if d < 1e-6 || d > 0.5 {
				t.Errorf("call %d (step %d): aggressive output at %.3g of a full recompute, want a small nonzero distance", c.call, c.step, d)
			}
		}, func(c tinyCall, _ *dit.Model, _ []float32) {
			if mp := c.plan.Blocks[3].Modules[1]; mp.Action == hook.Partial {
				chosen[score] = append(chosen[score], methods.SortedRows(mp.Tokens)...)
			}
			hasBase = hasBase || c.cache.Base(3) != nil
		})
		if worst > 0.05 {
			t.Errorf("score %s: x_k %.3g from the uncached run", score, worst)
		}
		if hasBase != (score != "random") {
			t.Errorf("score %s: a base score was stored: %t", score, hasBase)
		}
	}
	for _, pair := range [][2]string{{"attention", "vnorm"}, {"attention", "random"}, {"vnorm", "random"}} {
		a, b := chosen[pair[0]], chosen[pair[1]]
		if len(a) == 0 || len(a) != len(b) || slices.EqualFunc(a, b, slices.Equal) {
			t.Errorf("scores %s and %s chose the same tokens (%d selections)", pair[0], pair[1], len(a))
		}
	}
	if aggressive != 8 || l0 != 1 {
		t.Errorf("saw %d whole-stack and %d layer-0 aggressive calls, want 8 and 1", aggressive, l0)
	}
}

// TaylorSeer end to end (N = 3, order 2): predicted calls recompute no module and change no
// history, and their outputs are not plain reuse of the last full step's.
func TestTaylorSeerTiny(t *testing.T) {
	var predicted, differs int
	snapshot := func(c *hook.Cache) (s []*tensors.Tensor) {
		for b := range 4 {
			s = append(s, c.History(b, 0)...)
			s = append(s, c.History(b, 1)...)
		}
		return s
	}
	var before []*tensors.Tensor
	_, worst := runTiny(t, "taylorseer", map[string]string{"N": "3", "order": "2"}, func(c tinyCall, m *dit.Model, _ []float32) {
		before = snapshot(c.cache)
		if c.plan.Blocks[0].Modules[0].Action != hook.Predict {
			return
		}
		predicted++
		// Replay the call (a prediction changes no cache) to see block 3's predicted MLP output.
		var raw []float32
		if _, err := m.Forward(c.x, c.t, c.y, hook.Options{Plan: c.plan, Cache: c.cache, Probe: func(name string, v *tensors.Tensor) {
			if name == "block3_mlp_raw" {
				raw = tensors.MustCopyFlatData[float32](v)
			}
		}}); err != nil {
			t.Fatal(err)
		}
		if golden.MaxAbs(raw, tensors.MustCopyFlatData[float32](c.cache.History(3, 1)[0])) > 0 {
			differs++
		}
	}, func(c tinyCall, _ *dit.Model, _ []float32) {
		if c.plan.Blocks[0].Modules[0].Action == hook.Predict && !slices.Equal(snapshot(c.cache), before) {
			t.Errorf("call %d: a predicted call changed the history", c.call)
		}
		for b := range 4 {
			if c.cache.Out(b, 0) != nil || len(c.cache.History(b, 0)) == 0 {
				t.Fatalf("call %d block %d: the cache holds an output (%t) or no history", c.call, b, c.cache.Out(b, 0) != nil)
			}
		}
	})
	if predicted != 32 || differs < 30 {
		t.Errorf("%d predicted calls (%d differ from reuse), want 32 (all but the first after step 48)", predicted, differs)
	}
	if worst > 0.05 {
		t.Errorf("x_k %.3g from the uncached run", worst)
	}
}

// Δ-DiT end to end: full calls keep both ranges, cached calls skip the rear blocks before the
// boundary and the front blocks after it, adding the last full step's residual.
func TestDeltaDiTTiny(t *testing.T) {
	front, rear := hook.Span{From: 0, To: 1}, hook.Span{From: 2, To: 3}
	var early, late int
	_, worst := runTiny(t, "deltadit", map[string]string{"N": "2", "boundary": "25", "blocks": "2"}, func(c tinyCall, m *dit.Model, _ []float32) {
		p := c.plan
		if c.step == 49 || c.step%2 == 0 {
			if len(p.Skips) != 0 || !slices.Equal(p.Keep, []hook.Span{front, rear}) {
				t.Errorf("call %d (full): skips %v keep %v", c.call, p.Skips, p.Keep)
			}
			return
		}
		want := front
		if c.step > 25 {
			want, early = rear, early+1
		} else {
			late++
		}
		if len(p.Skips) != 1 || p.Skips[0].Span != want || p.Skips[0].Mode != hook.SkipResidual {
			t.Errorf("call %d (step %d): skips %+v, want %v residual", c.call, c.step, p.Skips, want)
		}
	}, func(c tinyCall, _ *dit.Model, _ []float32) {
		// Δ-DiT reuses ranges only: no module output is held in the cache.
		for b := range 4 {
			if c.cache.Out(b, 0) != nil || c.cache.Out(b, 1) != nil {
				t.Fatalf("call %d: block %d's module outputs are cached", c.call, b)
			}
		}
	})
	if early != 11 || late != 13 {
		t.Errorf("%d early and %d late cached calls, want 11 and 13", early, late)
	}
	if worst > 0.05 {
		t.Errorf("x_k %.3g from the uncached run", worst)
	}
}

// ToCa and DuCa with the scores of the MLP's current input (`similarity`, `norm`) and the
// attention score, all chosen on the device: the plan carries the choice after the call (the run
// asks for tokens), the run stays close to the uncached one, and each score chooses differently.
func TestInputScoresTiny(t *testing.T) {
	for _, method := range []string{"toca", "duca"} {
		chosen := map[string][][]int32{}
		for _, score := range []string{"attention", "similarity", "norm"} {
			partial := 0
			_, worst := runTiny(t, method, map[string]string{"N": "3", "ratio": "0.07", "score": score},
				func(c tinyCall, _ *dit.Model, _ []float32) {
					mp := c.plan.Blocks[3].Modules[1]
					if mp.Action == hook.Partial && (mp.Tokens != nil || mp.Select == nil || mp.Select.Score.String() != score) {
						t.Errorf("%s %s call %d: partial plan %+v before the call, want a device choice by %s", method, score, c.call, mp, score)
					}
				},
				func(c tinyCall, _ *dit.Model, _ []float32) {
					if mp := c.plan.Blocks[3].Modules[1]; mp.Action == hook.Partial {
						if mp.Tokens == nil {
							t.Fatalf("%s %s call %d: no tokens in the plan after the call", method, score, c.call)
						}
						partial++
						chosen[score] = append(chosen[score], methods.SortedRows(mp.Tokens)...)
					}
				})
			if partial == 0 {
				t.Errorf("%s %s: no partial step", method, score)
			}
			if worst > 0.05 {
				t.Errorf("%s %s: x_k %.3g from the uncached run", method, score, worst)
			}
		}
		for _, pair := range [][2]string{{"attention", "similarity"}, {"attention", "norm"}, {"similarity", "norm"}} {
			a, b := chosen[pair[0]], chosen[pair[1]]
			if len(a) == 0 || len(a) != len(b) || slices.EqualFunc(a, b, slices.Equal) {
				t.Errorf("%s: scores %s and %s chose the same tokens (%d selections)", method, pair[0], pair[1], len(a))
			}
		}
	}
}
