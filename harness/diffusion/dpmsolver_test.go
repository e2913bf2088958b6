package diffusion

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

// The PixArt-α golden chain (testdata/README.md): 2 images, CFG 4.5 over all 4 ε channels.
const (
	dpmGolden   = "sampling_dpmpp.safetensors"
	dpmImages   = 2
	dpmChannels = 4
	dpmCFG      = 4.5
)

// dpmGoldenPath is absolute: golden.Open reads relative paths from the repository's testdata.
func dpmGoldenPath(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", dpmGolden))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// countBits reports how many values differ bit for bit (the schedule is meant to be exact).
func countBits(got, want []float32) int {
	n := 0
	for i := range got {
		if got[i] != want[i] {
			n++
		}
	}
	return n
}

func TestDPMScheduleGolden(t *testing.T) {
	g := golden.Open(t, dpmGoldenPath(t))
	d, err := NewDPMSolver(20, 2)
	if err != nil {
		t.Fatal(err)
	}
	tArray, logAlpha := dpmDiscreteSchedule()
	for _, c := range []struct {
		name string
		got  []float32
		tol  float64
	}{
		// Plain float32 arithmetic (linspace32 emulates torch's kernel): bit for bit.
		{"t_array", tArray, 0},
		{"t_cont", d.tCont, 0},
		{"log_alpha_array", logAlpha, 1e-6},
		{"sched_log_alpha", d.logAlpha, 1e-5},
		{"sched_alpha", d.alpha, 1e-5},
		{"sched_sigma", d.sigma, 1e-5},
		{"sched_lambda", d.lambda, 1e-5},
	} {
		want := golden.F32(t, g, c.name)
		e := golden.RelToMax(c.got, want)
		if e > c.tol {
			t.Errorf("%s: rel error %.3g > %g", c.name, e, c.tol)
		}
		t.Logf("%s: rel error %.3g, %d of %d values not bit-exact", c.name, e, countBits(c.got, want), len(want))
	}
	want := golden.F32(t, g, "model_t")
	e := golden.MaxAbs(d.modelT, want)
	if e > 1e-4 {
		t.Errorf("model_t: abs error %.3g > 1e-4", e)
	}
	t.Logf("model_t: abs error %.3g, %d of %d values not bit-exact (%v)", e, countBits(d.modelT, want), len(want), d.modelT[:3])
}

// TestDPMSolverGolden feeds the golden model outputs through CFG and the solver, one call at a
// time from the golden state (teacher forcing), and follows the free-running chain as well.
func TestDPMSolverGolden(t *testing.T) {
	g := golden.Open(t, dpmGoldenPath(t))
	d, err := NewDPMSolver(20, 2)
	if err != nil {
		t.Fatal(err)
	}
	forced, free := d.NewState(), d.NewState()
	xForced := golden.F32(t, g, "x_init")
	xFree := xForced
	var worst = map[string]float64{}
	check := func(name string, k int, got, want []float32, tol float64) {
		e := golden.RelToMax(got, want)
		if e > tol {
			t.Errorf("%s call %d: rel error %.3g > %g", name, k, e, tol)
		}
		worst[name] = max(worst[name], e)
	}
	for k := range 20 {
		// The golden model output is [uncond | cond] (the DPM-Solver wrapper); GuideCFG wants
		// [cond | null], so swap the halves.
		mo := golden.F32(t, g, fmt.Sprintf("model_out_%03d", k))
		half := len(mo) / 2
		out := append(append([]float32(nil), mo[half:]...), mo[:half]...)
		if err := GuideCFG(out, 2*dpmImages, dpmChannels, dpmChannels, GuidanceAll, dpmCFG); err != nil {
			t.Fatal(err)
		}
		eps := out[:half]
		check("eps", k, eps, golden.F32(t, g, fmt.Sprintf("eps_%03d", k)), 2e-5)
		res, err := forced.Step(k, xForced, eps)
		if err != nil {
			t.Fatal(err)
		}
		want := golden.F32(t, g, fmt.Sprintf("x_%03d", k))
		check("x0", k, res.PredXStart, golden.F32(t, g, fmt.Sprintf("x0_%03d", k)), 1e-5)
		check("x", k, res.X, want, 1e-5)
		xForced = want
		resFree, err := free.Step(k, xFree, eps)
		if err != nil {
			t.Fatal(err)
		}
		xFree = resFree.X
	}
	check("sample", 19, xFree, golden.F32(t, g, "sample"), 1e-5)
	t.Logf("max rel errors: %v", worst)
}

func TestDPMSolverErrors(t *testing.T) {
	for _, c := range [][2]int{{0, 1}, {1, 2}, {20, 3}, {20, 0}, {-1, 2}} {
		if _, err := NewDPMSolver(c[0], c[1]); err == nil {
			t.Errorf("steps %d order %d: want an error", c[0], c[1])
		}
	}
	for _, spec := range []string{"ddim20", "10,10", "x", "0"} {
		if _, err := ParseDPMSolver(spec); err == nil {
			t.Errorf("steps %q: want an error", spec)
		}
	}
	d, err := ParseDPMSolver("5")
	if err != nil || d.Steps() != 5 || d.Order() != DefaultDPMOrder {
		t.Fatalf("ParseDPMSolver(5) = %v, %v", d, err)
	}
	s := d.NewState()
	x := make([]float32, 8)
	if _, err := s.Step(0, x, x[:7]); err == nil {
		t.Error("short ε: want an error")
	}
	if _, err := s.Step(1, x, x); err == nil {
		t.Error("call 1 before call 0: want an error")
	}
	if _, err := s.Step(0, x, x); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Step(1, x[:4], x[:4]); err == nil {
		t.Error("state changed size: want an error")
	}
	if _, err := EpsChannels(x, 3, 2, 1); err == nil {
		t.Error("output not splitting into rows: want an error")
	}
	eps, err := EpsChannels([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 1)
	if err != nil || fmt.Sprint(eps) != "[1 2 5 6]" {
		t.Errorf("EpsChannels = %v, %v; want [1 2 5 6]", eps, err)
	}
	if k, err := ParseKind("dpmpp"); err != nil || k != DPMSolverPP || k.NeedsNoise() {
		t.Errorf("ParseKind(dpmpp) = %q, %v", k, err)
	}
}

// Under 10 steps the last update is first order (lower_order_final); order 1 is DDIM-like
// throughout: both must reach a finite state from noise.
func TestDPMSolverShort(t *testing.T) {
	for _, c := range [][2]int{{1, 1}, {2, 2}, {5, 2}, {5, 1}} {
		d, err := NewDPMSolver(c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		s := d.NewState()
		x := []float32{1, -0.5, 0.25, 2}
		for k := range d.Steps() {
			res, err := s.Step(k, x, []float32{0.9, -0.4, 0.3, 1.8})
			if err != nil {
				t.Fatal(err)
			}
			x = res.X
		}
		if _, err := s.Step(d.Steps(), x, x); err == nil {
			t.Errorf("%v: a call past the last: want an error", c)
		}
		if tm := d.TimestepMap(); tm[d.Steps()-1] != 999 {
			t.Errorf("%v: first call's timestep %d, want 999", c, tm[d.Steps()-1])
		}
	}
}
