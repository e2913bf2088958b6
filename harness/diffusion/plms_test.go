package diffusion

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

// The Stable Diffusion v1 PLMS chain of testdata/sd-unet (README there): 10 steps, 11 calls,
// 2 prompts, CFG 7.5 already applied in call_k_eps_cfg.
const (
	plmsGolden  = "sd-unet/plms.safetensors"
	plmsSched   = "sd-unet/schedule.safetensors"
	plmsSteps   = 10
	plmsTolOne  = 2e-6 // one update from the golden state and ε
	plmsTolFree = 1e-4 // end to end
)

func TestLDMScheduleGolden(t *testing.T) {
	g := golden.Open(t, plmsSched)
	s := SDSchedule()
	for _, c := range []struct {
		name string
		got  []float32
	}{{"betas", s.Betas32}, {"alphas_cumprod", s.AlphasCumprod32}, {"alphas_cumprod_prev", s.AlphasCumprodPrev32}} {
		want := golden.F32(t, g, c.name)
		if n := countBits(c.got, want); n != 0 || len(c.got) != len(want) {
			t.Errorf("%s: %d of %d values not bit-exact (rel error %.3g)", c.name, n, len(want), golden.RelToMax(c.got, want))
		}
	}
	for _, c := range []struct {
		name string
		got  []float64
	}{{"betas_f64", s.Betas}, {"alphas_cumprod_f64", s.AlphasCumprod}} {
		want := golden.F64(t, g, c.name)
		n := 0
		for i := range want {
			if c.got[i] != want[i] {
				n++
			}
		}
		if n != 0 {
			t.Errorf("%s: %d of %d float64 values not bit-exact (rel error %.3g)", c.name, n, len(want), golden.RelToMax(c.got, want))
		}
	}
}

func TestPLMSScheduleGolden(t *testing.T) {
	g := golden.Open(t, plmsGolden)
	p, err := NewPLMS(plmsSteps)
	if err != nil {
		t.Fatal(err)
	}
	if p.Steps() != plmsSteps || p.Calls() != plmsSteps+1 {
		t.Fatalf("steps %d, calls %d; want %d, %d", p.Steps(), p.Calls(), plmsSteps, plmsSteps+1)
	}
	if got, want := fmt.Sprint(p.DDIMTimesteps()), fmt.Sprint(golden.I64(t, g, "ddim_timesteps")); got != want {
		t.Errorf("ddim_timesteps %s, want %s", got, want)
	}
	for _, c := range []struct {
		name string
		got  []float32
	}{{"ddim_alphas", p.Alphas()}, {"ddim_alphas_prev", p.AlphasPrev()}} {
		want := golden.F64(t, g, c.name)
		for i, v := range c.got {
			if float64(v) != want[i] {
				t.Errorf("%s[%d] = %v, want %v", c.name, i, float64(v), want[i])
			}
		}
	}
	if p.Timestep(0) != 901 || p.Timestep(plmsSteps-1) != 1 {
		t.Errorf("timesteps of steps 0 and %d: %d, %d; want 901, 1", plmsSteps-1, p.Timestep(0), p.Timestep(plmsSteps-1))
	}
}

// TestPLMSGolden replays the golden per-call guided ε: each update from the golden state alone
// (teacher forcing, through Update and CombineEps), and the whole chain through PLMSState, whose
// every requested call must match the golden call's input and timestep.
func TestPLMSGolden(t *testing.T) {
	g := golden.Open(t, plmsGolden)
	p, err := NewPLMS(plmsSteps)
	if err != nil {
		t.Fatal(err)
	}
	eps := func(k int) []float32 { return golden.F32(t, g, fmt.Sprintf("call_%d_eps_cfg", k)) }
	worst := map[string]float64{}
	check := func(name string, got, want []float32, tol float64) {
		t.Helper()
		e := golden.RelToMax(got, want)
		if e > tol {
			t.Errorf("%s: rel error %.3g > %g", name, e, tol)
		}
		worst[name] = max(worst[name], e)
	}

	// Teacher forcing: step i's ε_t is call 0 (i = 0) or call i+1; the history holds ε_t only.
	etOf := func(i int) []float32 {
		if i == 0 {
			return eps(0)
		}
		return eps(i + 1)
	}
	x := golden.F32(t, g, "x_T")
	for i := range plmsSteps {
		var e []float32
		if i == 0 {
			pred, err := p.Update(0, x, eps(0))
			if err != nil {
				t.Fatal(err)
			}
			in := golden.F32(t, g, "call_1_x_in") // [uncond rows | cond rows], both the predictor state
			check("predictor", pred.X, in[len(in)/2:], plmsTolOne)
			e = make([]float32, len(x))
			e1 := eps(1)
			for k := range e {
				e[k] = float32(eps(0)[k]+e1[k]) / 2
			}
		} else {
			var old [][]float32
			for j := max(0, i-3); j < i; j++ {
				old = append(old, etOf(j))
			}
			if e, err = CombineEps(etOf(i), old); err != nil {
				t.Fatal(err)
			}
		}
		res, err := p.Update(i, x, e)
		if err != nil {
			t.Fatal(err)
		}
		check("x (one update)", res.X, golden.F32(t, g, fmt.Sprintf("x_%d", i)), plmsTolOne)
		check("pred_x0 (one update)", res.PredXStart, golden.F32(t, g, fmt.Sprintf("pred_x0_%d", i)), plmsTolOne)
		x = golden.F32(t, g, fmt.Sprintf("x_%d", i))
	}

	// Free running through the state machine, fed the golden ε of each call.
	s := p.NewState(golden.F32(t, g, "x_T"))
	for k := 0; ; k++ {
		c, ok := s.Next()
		if !ok {
			if k != p.Calls() {
				t.Errorf("done after %d calls, want %d", k, p.Calls())
			}
			break
		}
		ts := golden.I64(t, g, fmt.Sprintf("call_%d_t", k))
		in := golden.F32(t, g, fmt.Sprintf("call_%d_x_in", k))
		if c.Call != k || c.T != ts[0] || c.Corrector != (k == 1) {
			t.Fatalf("call %d: got call %d at t=%d (corrector %t), want t=%d", k, c.Call, c.T, c.Corrector, ts[0])
		}
		check("call x_in", c.X, in[len(in)/2:], plmsTolFree)
		res, err := s.Step(eps(k))
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete != (k != 0) {
			t.Fatalf("call %d: complete %t", k, res.Complete)
		}
		if res.Complete {
			i := c.Step
			check("x (free)", res.X, golden.F32(t, g, fmt.Sprintf("x_%d", i)), plmsTolFree)
			check("pred_x0 (free)", res.PredXStart, golden.F32(t, g, fmt.Sprintf("pred_x0_%d", i)), plmsTolFree)
		}
	}
	check("final", s.X(), golden.F32(t, g, "final"), plmsTolFree)
	t.Logf("max rel errors: %v", worst)
}

func TestPLMSErrors(t *testing.T) {
	for _, n := range []int{0, -1, 3, 9, 27, 37, 501, 1000, 1001} {
		if _, err := NewPLMS(n); err == nil {
			t.Errorf("NewPLMS(%d): want an error", n)
		}
	}
	// 1000 div 7 = 142: range(0, 1000, 142) has 8 entries, and the reference takes 8 steps.
	p, err := NewPLMS(7)
	if err != nil || p.Steps() != 8 || p.DDIMTimesteps()[7] != 995 {
		t.Fatalf("NewPLMS(7): %v, %v", p, err)
	}
	if _, err := CombineEps([]float32{1}, nil); err == nil {
		t.Error("CombineEps without history: want an error")
	}
	if _, err := CombineEps([]float32{1}, [][]float32{{1, 2}}); err == nil {
		t.Error("CombineEps with a mismatched history: want an error")
	}
	s := p.NewState(make([]float32, 4))
	if _, err := s.Step(make([]float32, 3)); err == nil {
		t.Error("Step with a short ε: want an error")
	}
	if _, err := p.Update(p.Steps(), make([]float32, 4), make([]float32, 4)); err == nil {
		t.Error("Update past the last step: want an error")
	}
	for range p.Calls() {
		if _, err := s.Step(make([]float32, 4)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Next(); ok || !s.Done() {
		t.Error("a finished trajectory asks for another call")
	}
	if _, err := s.Step(make([]float32, 4)); err == nil {
		t.Error("Step after the last step: want an error")
	}
	// The sampling loop drives PLMS (harness.Request.PLMS), so the name parses.
	if k, err := ParseKind("plms"); err != nil || k != PLMS {
		t.Errorf("ParseKind(plms) = %q, %v; want %q", k, err, PLMS)
	}
}

// ldm's DDIM is the PLMS machine with one call per step and ε′ = ε: each step is Update with
// the step's own ε, at the PLMS timesteps.
func TestLDMDDIM(t *testing.T) {
	d, err := NewLDMDDIM(5)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := NewPLMS(5)
	if d.Calls() != 5 || !d.DDIM() || p.DDIM() || !slices.Equal(d.DDIMTimesteps(), p.DDIMTimesteps()) {
		t.Fatalf("DDIM: %d calls, timesteps %v (PLMS %v)", d.Calls(), d.DDIMTimesteps(), p.DDIMTimesteps())
	}
	x := []float32{0.5, -1, 2}
	s := d.NewState(x)
	for i := range 5 {
		c, ok := s.Next()
		if !ok || c.Call != i || c.Step != i || c.T != d.Timestep(i) || c.Corrector {
			t.Fatalf("call %d: %+v", i, c)
		}
		eps := []float32{float32(i) * 0.1, 0.3, -0.2}
		want, _ := d.Update(i, x, eps)
		got, err := s.Step(eps)
		if err != nil || !got.Complete || !slices.Equal(got.X, want.X) {
			t.Fatalf("step %d: %v %+v, want %v", i, err, got, want.X)
		}
		x = want.X
	}
	if !s.Done() {
		t.Error("DDIM not done after its steps")
	}
}
