package methods_test

import (
	"context"
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
	"github.com/cachebench/cachebench/models/pixart"
)

// ducaPixArtLetters is the per-call block summary of DuCa-PixArt with N = 3 over 20 calls:
// full at 0, 3, …, 18, conservative (partial cross-attention and MLP) at 1, 4, …, 19,
// aggressive (the whole stack skipped) at 2, 5, …, 17.
func ducaPixArtLetters(depth int) []string {
	var out []string
	for call := range 20 {
		out = append(out, strings.Repeat(string("FPS"[call%3]), depth))
	}
	return out
}

// The schedule and plans on PixArt-XL/2 at 256 px, with no network: step types, the whole stack
// kept at every non-aggressive call and replaced at every aggressive one, conservative steps
// planned as ToCa-PixArt plans its partial steps, and aggressive calls billed nothing.
func TestDuCaPixArtSchedule(t *testing.T) {
	c, err := pixart.Preset(256)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Layout()
	env := methods.Env{Layout: l, Steps: 20, Rows: 4, Samples: []int{0, 1}}
	m, _, err := methods.New("duca-pixart", nil, env)
	if err != nil {
		t.Fatal(err)
	}
	toca, _, err := methods.New("toca-pixart", nil, env)
	if err != nil {
		t.Fatal(err)
	}
	whole := hook.Span{From: 0, To: l.Depth - 1}
	tr := &methods.Trace{}
	for call := range 20 {
		p, err := m.Plan(call, 19-call)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := toca.Plan(call, 19-call)
		if err != nil {
			t.Fatal(err)
		}
		flops := c.BlockFLOPs(p, env.Rows)
		tr.Record(call, 19-call, 0, p, m.Notes(), flops, l.Tokens)
		want := []string{"full", "ToCa", "aggressive"}[call%3]
		for li, n := range m.Notes() {
			if n.Type != want || *n.TUsed != 3 || *n.TAfter != 3 {
				t.Fatalf("call %d layer %d: %s T %g→%g, want %s with T = 3", call, li, n.Type, *n.TUsed, *n.TAfter, want)
			}
		}
		switch want {
		case "aggressive":
			if len(p.Skips) != 1 || p.Skips[0].Span != whole || p.Skips[0].Mode != hook.SkipReplace || p.Skips[0].Source != nil || p.Keep != nil {
				t.Errorf("call %d: skips %+v keep %v, want the whole stack replaced and nothing kept", call, p.Skips, p.Keep)
			}
			if slices.Max(flops) != 0 {
				t.Errorf("call %d: aggressive call billed %v", call, flops)
			}
		default:
			if len(p.Skips) != 0 || !slices.Equal(p.Keep, []hook.Span{whole}) {
				t.Errorf("call %d: skips %+v keep %v, want the whole stack kept", call, p.Skips, p.Keep)
			}
		}
		if want != "ToCa" {
			continue
		}
		for li, bp := range p.Blocks {
			if bp.Modules[0].Action != hook.Reuse || bp.Refresh != hook.ScoreNone {
				t.Errorf("call %d layer %d: attention %s refresh %s, want reuse and no refresh", call, li, bp.Modules[0].Action, bp.Refresh)
			}
			for mi := 1; mi <= 2; mi++ {
				mp := bp.Modules[mi]
				s := mp.Select
				if mp.Action != hook.Partial || s == nil || s.Score != hook.ScoreEntropy || !s.Pairs || s.Grid != 4 || s.Beta != 0.4 ||
					s.StaleWeight != 0.25 || s.StaleNorm != 3 {
					t.Fatalf("call %d layer %d %s: %+v, selection %+v", call, li, l.Modules[mi], mp, s)
				}
				// The ratio schedule depends on (step, layer) only: where ToCa-PixArt is partial too, k agrees.
				if tm := tp.Blocks[li].Modules[mi]; tm.Action == hook.Partial && tm.Fresh() != mp.Fresh() {
					t.Errorf("call %d layer %d %s: k = %d, toca-pixart plans %d", call, li, l.Modules[mi], mp.Fresh(), tm.Fresh())
				}
			}
		}
	}
	if want := ducaPixArtLetters(l.Depth); !slices.Equal(tr.Schedule, want) {
		t.Errorf("schedule\n got %v\nwant %v", tr.Schedule, want)
	}
	full := c.BlockFLOPs(hook.FullPlan(l), env.Rows)
	var base int64
	for _, f := range full {
		base += 20 * f
	}
	t.Logf("DuCa-PixArt N=3 r0=0.30 on PixArt-XL/2 256 px: %.4g FLOPs, %.3fx", float64(tr.TotalFLOPs), float64(base)/float64(tr.TotalFLOPs))
}

// cacheState is a copy of the token state and the identity of the module outputs in a cache.
type cacheState struct {
	stale, base [][]float32 // [block·modules + module] counters, [block] base scores; nil = none
	out         []*tensors.Tensor
}

func snapshot(c *hook.Cache, l hook.Layout) cacheState {
	var s cacheState
	host := func(t *tensors.Tensor) []float32 {
		if t == nil {
			return nil
		}
		return tensors.MustCopyFlatData[float32](t)
	}
	for b := range l.Depth {
		for m := range l.Modules {
			s.stale = append(s.stale, host(c.Stale(b, m)))
			s.out = append(s.out, c.Out(b, m))
		}
		s.base = append(s.base, host(c.Base(b)))
	}
	return s
}

// ducaProbe runs the tiny PixArt-α and checks every DuCa call around the real forward: plans
// validate; an aggressive call changes nothing in the cache and, run again on another input with
// the previous call's timestep, reproduces the previous call's output bit for bit (so the stack
// output it used is the one the previous, non-aggressive call produced); a partial module with
// k = 0 ages all its staleness counters by one.
type ducaProbe struct {
	*pixart.Model
	t                *testing.T
	call             int
	prevT            []float64
	prevOut          []float32
	aggressive, aged int
}

func (w *ducaProbe) Forward(x []float32, ts []float64, y []int64, opt hook.Options) ([]float32, error) {
	t, l := w.t, w.Layout()
	k := w.call
	w.call++
	if err := opt.Plan.Validate(l, opt.Cache, len(ts)); err != nil {
		t.Errorf("call %d: plan does not validate: %v", k, err)
	}
	before := snapshot(opt.Cache, l)
	out, err := w.Model.Forward(x, ts, y, opt)
	if err != nil {
		return nil, err
	}
	after := snapshot(opt.Cache, l)
	if len(opt.Plan.Skips) > 0 {
		w.aggressive++
		if !slices.Equal(before.out, after.out) {
			t.Errorf("call %d: an aggressive call replaced cached module outputs", k)
		}
		for i := range before.stale {
			if !slices.Equal(before.stale[i], after.stale[i]) {
				t.Errorf("call %d: an aggressive call changed the staleness counters of %s", k, l.Modules[i%len(l.Modules)])
			}
		}
		for b := range before.base {
			if !slices.Equal(before.base[b], after.base[b]) {
				t.Errorf("call %d: an aggressive call changed block %d's entropy score", k, b)
			}
		}
		other := make([]float32, len(x))
		for i, v := range x {
			other[i] = 2*v + 1
		}
		again, err := w.Model.Forward(other, w.prevT, y, opt)
		if err != nil {
			return nil, err
		}
		if e := golden.MaxAbs(again, w.prevOut); e != 0 {
			t.Errorf("call %d: the aggressive plan under the previous timestep differs from the previous output by %g", k, e)
		}
		if slices.Equal(out, w.prevOut) {
			t.Errorf("call %d: the aggressive output equals the previous one: the final layer ignored the timestep", k)
		}
		return out, nil
	}
	for b, bp := range opt.Plan.Blocks {
		for m, mp := range bp.Modules {
			if mp.Action != hook.Partial || mp.Fresh() != 0 {
				continue
			}
			w.aged++
			i := b*len(l.Modules) + m
			was := before.stale[i]
			if was == nil {
				was = make([]float32, len(ts)*l.Tokens)
			}
			for j, v := range after.stale[i] {
				if v != was[j]+1 {
					t.Errorf("call %d block %d %s (k = 0): counter %d went %g → %g, want +1", k, b, l.Modules[m], j, was[j], v)
					break
				}
			}
		}
	}
	w.prevT, w.prevOut = slices.Clone(ts), slices.Clone(out)
	return out, nil
}

// DuCa-PixArt on the tiny golden PixArt-α (captions, noise and sampler of the ToCa-PixArt
// golden), with the checks of ducaProbe on every call.
func TestDuCaPixArtRun(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pixart.Load(b, golden.Path("pixart/weights.safetensors"), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "pixart-caching/toca.safetensors")
	mask := golden.I64(t, g, "mask")
	L := pm.MaxLength
	caps := &pixart.Captions{Features: golden.F32(t, g, "y_cond"), Lengths: make([]int, 2)}
	for r := range 2 {
		for _, v := range mask[r*L : (r+1)*L] {
			caps.Lengths[r] += int(v)
		}
	}
	if err := pm.SetCaptions(caps); err != nil {
		t.Fatal(err)
	}
	solver, err := diffusion.NewDPMSolver(20, 2)
	if err != nil {
		t.Fatal(err)
	}
	l := pm.Layout()
	pol, _, err := methods.New("duca-pixart", nil, methods.Env{Layout: l, Steps: 20, Rows: 4, Samples: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	w := &ducaProbe{Model: pm, t: t}
	tr := &methods.Trace{Method: "duca-pixart"}
	req := harness.Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 4.5, XInit: golden.F32(t, g, "x_init"),
		Labels: []int64{0, 1}, Policy: pol, Cache: hook.NewCache(l),
		OnStep: func(s harness.StepInfo) error {
			tr.Record(s.Call, s.Call, s.Time, s.Plan, pol.Notes(), pm.BlockFLOPs(s.Plan, s.Rows), l.Tokens)
			return nil
		}}
	res, err := harness.Sample(context.Background(), w, req)
	if err != nil {
		t.Fatal(err)
	}
	if want := ducaPixArtLetters(l.Depth); !slices.Equal(tr.Schedule, want) {
		t.Errorf("schedule\n got %v\nwant %v", tr.Schedule, want)
	}
	if w.aggressive != 6 || w.aged == 0 {
		t.Errorf("checked %d aggressive calls (want 6) and %d partial modules with k = 0 (want some)", w.aggressive, w.aged)
	}
	for _, v := range res.Sample {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("sample is not finite")
		}
	}
	// DuCa is an approximation: the sample departs from ToCa-PixArt's, but not wildly.
	e := golden.RelToMax(res.Sample, golden.F32(t, g, "sample"))
	t.Logf("sample vs ToCa-PixArt's golden: %.3g relative; %d partial modules with k = 0", e, w.aged)
	if e == 0 || e > 0.5 {
		t.Errorf("sample vs ToCa-PixArt's: relative difference %.3g, want in (0, 0.5]", e)
	}
}

// Each method refuses the other family's blocks, with one line naming the method.
func TestPixArtMethodsRefuseLayouts(t *testing.T) {
	dit := hook.Layout{Depth: 3, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 16, GridH: 4, GridW: 4, Hidden: 8, Heads: 2}
	c, err := pixart.Preset(256)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		method string
		layout hook.Layout
		want   string
	}{
		{"duca-pixart", dit, "needs a PixArt-α-like model"},
		{"toca-pixart", dit, "needs a PixArt-α-like model"},
		{"toca", c.Layout(), "needs a DiT-like model"},
		{"duca", c.Layout(), "needs a DiT-like model"},
	} {
		_, _, err := methods.New(x.method, nil, methods.Env{Layout: x.layout, Steps: 20, Rows: 4})
		if err == nil || !strings.HasPrefix(err.Error(), "method "+x.method+":") || !strings.Contains(err.Error(), x.want) {
			t.Errorf("%s on %v: error %v, want one containing %q", x.method, x.layout.Modules, err, x.want)
		}
	}
}
