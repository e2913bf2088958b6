package diffusion

import (
	"fmt"
	"math"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

func TestScheduleGolden(t *testing.T) {
	g := golden.Open(t, "dit/schedule.safetensors")
	s, err := NewSchedule(1000, "20")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(s.TimestepMap), fmt.Sprint(golden.I64(t, g, "timestep_map")); got != want {
		t.Fatalf("timestep_map %s, want %s", got, want)
	}
	cases := map[string][]float64{
		"base_betas":                     LinearBetas(1000),
		"base_alphas_cumprod":            cumprod(oneMinus(LinearBetas(1000))),
		"betas":                          s.Betas,
		"alphas_cumprod":                 s.AlphasCumprod,
		"alphas_cumprod_prev":            s.AlphasCumprodPrev,
		"sqrt_recip_alphas_cumprod":      s.SqrtRecipAlphasCumprod,
		"sqrt_recipm1_alphas_cumprod":    s.SqrtRecipm1AlphasCumprod,
		"posterior_variance":             s.PosteriorVariance,
		"posterior_log_variance_clipped": s.PosteriorLogVarianceClipped,
		"posterior_mean_coef1":           s.PosteriorMeanCoef1,
		"posterior_mean_coef2":           s.PosteriorMeanCoef2,
		"log_betas":                      s.LogBetas,
	}
	for name, got := range cases {
		// The reference computes these in float64 with numpy; the same operations in the same
		// order agree to a few ulps.
		if e := golden.RelToMax(got, golden.F64(t, g, name)); e > 1e-14 {
			t.Errorf("%s: rel error %.3g > 1e-14", name, e)
		}
	}
	if s.PosteriorVariance[0] != 0 {
		t.Errorf("posterior_variance[0] = %g, want exactly 0", s.PosteriorVariance[0])
	}
}

func TestSpaceTimesteps(t *testing.T) {
	for _, c := range []struct {
		spec string
		n    int
		head string
	}{
		{"50", 50, "[0 20 41 61 82"},
		{"250", 250, "[0 4 8 12 16"},
		{"ddim50", 50, "[0 20 40 60 80"},
		{"10,10", 20, "[0 55 111 166"},
	} {
		got, err := SpaceTimesteps(1000, c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if len(got) != c.n || fmt.Sprint(got)[:len(c.head)] != c.head {
			t.Errorf("%s: %d steps %v…, want %d starting %s", c.spec, len(got), got[:4], c.n, c.head)
		}
	}
	for _, bad := range []string{"", "x", "-3", "ddim", "ddim7x", "2000", "ddim999"} {
		if _, err := SpaceTimesteps(1000, bad); err == nil {
			t.Errorf("spec %q: want an error", bad)
		}
	}
}

// TestSingleStepGolden checks one update from the golden state and model output (2e-6).
func TestSingleStepGolden(t *testing.T) {
	s, err := NewSchedule(1000, "20")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []Kind{DDPM, DDIM} {
		g := golden.Open(t, "dit/sampling_"+string(kind)+".safetensors")
		prev := golden.F32(t, g, "x_init")
		for k := range 20 {
			i := 19 - k
			var noise []float32
			if kind == DDPM {
				noise = golden.F32(t, g, fmt.Sprintf("noise_%03d", k))
			}
			res, err := s.Step(kind, i, prev, golden.F32(t, g, fmt.Sprintf("model_out_%03d", k)), 4, 4, true, noise)
			if err != nil {
				t.Fatal(err)
			}
			want := golden.F32(t, g, fmt.Sprintf("x_%03d", k))
			if e := golden.RelToMax(res.X, want); e > 2e-6 {
				t.Errorf("%s call %d: x rel error %.3g > 2e-6", kind, k, e)
			}
			if e := golden.RelToMax(res.PredXStart, golden.F32(t, g, fmt.Sprintf("pred_xstart_%03d", k))); e > 2e-6 {
				t.Errorf("%s call %d: pred_xstart rel error %.3g > 2e-6", kind, k, e)
			}
			prev = want
		}
	}
}

func TestNoiseDeterministic(t *testing.T) {
	a, b := make([]float32, 1000), make([]float32, 1000)
	NewNoise(7, 3).Fill(a)
	NewNoise(7, 3).Fill(b)
	var sum, sq float64
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same (seed, index) gave different noise at %d", i)
		}
		sum += float64(a[i])
		sq += float64(a[i]) * float64(a[i])
	}
	if m, v := sum/1000, sq/1000; m < -0.15 || m > 0.15 || v < 0.8 || v > 1.2 {
		t.Errorf("noise mean %.3f var %.3f: not standard normal", m, v)
	}
	NewNoise(7, 4).Fill(b)
	if a[0] == b[0] && a[1] == b[1] {
		t.Error("neighbouring sample indices share noise")
	}
	counts := make([]int, 10)
	for i := range 10000 {
		counts[Label(1, i, 10)]++
	}
	for c, n := range counts {
		if n < 850 || n > 1150 {
			t.Errorf("label %d drawn %d times of 10000", c, n)
		}
	}
}

func TestStepErrors(t *testing.T) {
	s, _ := NewSchedule(1000, "10")
	x := make([]float32, 2*4*4)
	if _, err := s.Step(DDIM, 10, x, x, 2, 4, false, nil); err == nil {
		t.Error("index out of range: want error")
	}
	if _, err := s.Step(DDIM, 0, x, x[:8], 2, 4, false, nil); err == nil {
		t.Error("short model output: want error")
	}
	if _, err := s.Step(DDIM, 0, x, x, 3, 4, false, nil); err == nil {
		t.Error("bad batch: want error")
	}
	if _, err := ParseKind("euler"); err == nil {
		t.Error("unknown sampler: want error")
	}
}

// Without learned sigma the reference uses the "fixed large" variance: log(posterior_variance[1])
// at the last step, log(beta_i) before; with zero noise DDPM is then the posterior mean.
func TestFixedLargeVariance(t *testing.T) {
	s, _ := NewSchedule(1000, "10")
	if got, want := s.fixedLargeLogVariance(0), math.Log(s.PosteriorVariance[1]); got != want {
		t.Errorf("index 0: %g, want %g", got, want)
	}
	if got, want := s.fixedLargeLogVariance(5), math.Log(s.Betas[5]); got != want {
		t.Errorf("index 5: %g, want %g", got, want)
	}
	x := []float32{1, -2, 0.5, 3}
	eps := []float32{0.1, 0.2, -0.3, 0.4}
	noise := []float32{1, 1, 1, 1}
	res, err := s.Step(DDPM, 5, x, eps, 1, 1, false, noise)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		px := float64(float32(s.SqrtRecipAlphasCumprod[5]))*float64(x[i]) - float64(float32(s.SqrtRecipm1AlphasCumprod[5]))*float64(eps[i])
		mean := float64(float32(s.PosteriorMeanCoef1[5]))*px + float64(float32(s.PosteriorMeanCoef2[5]))*float64(x[i])
		want := mean + math.Exp(0.5*math.Log(s.Betas[5]))
		if math.Abs(float64(res.X[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Errorf("x[%d] = %g, want %g", i, res.X[i], want)
		}
	}
}
