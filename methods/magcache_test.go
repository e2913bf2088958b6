package methods

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

func magEnv(ratios []float64) Env {
	return Env{Layout: smallLayout, Steps: len(ratios), Rows: 2,
		Calibration: &Calibration{Model: "m", Sampler: "ddim", Steps: len(ratios), MagRatios: ratios}}
}

// The schedule by hand, thresh 0.12, K 2, retention 0.2 of 10 calls (calls 0, 1 run):
//
//	call 2: ratio 1.05,                 error 0.05          → skip
//	call 3: ratio 1.05·1.00 = 1.05,     error 0.10          → skip
//	call 4: ratio 1.05·0.98 = 1.029,    error 0.129 ≥ 0.12  → run, reset
//	call 5: ratio 0.97,                 error 0.03          → skip
//	call 6: ratio 0.97,                 error 0.06          → skip
//	call 7: 3 skips in a row > K                             → run, reset
//	call 8: ratio 0.9,                  error 0.1           → skip
//	call 9: ratio 0.72,                 error 0.38          → run
func TestMagCacheSchedule(t *testing.T) {
	ratios := []float64{1, 1.0, 1.05, 1.0, 0.98, 0.97, 1.0, 1.0, 0.9, 0.8}
	env := magEnv(ratios)
	m := mustNew(t, "magcache", nil, env)
	got := planLetters(t, m, env)
	if want := "FFSSFSSFSF"; got != want {
		t.Errorf("schedule %s, want %s", got, want)
	}
	// retention 0 would let call 0 skip with ratio 1; it runs, nothing being cached yet.
	flat := make([]float64, 6)
	for i := range flat {
		flat[i] = 1
	}
	env = magEnv(flat)
	m = mustNew(t, "magcache", map[string]string{"retention_ratio": "0", "K": "100"}, env)
	if got := planLetters(t, m, env); got != "FSSSSS" {
		t.Errorf("retention 0: %s, want FSSSSS", got)
	}
	m = mustNew(t, "magcache", map[string]string{"retention_ratio": "0.5"}, env)
	if got := planLetters(t, m, env); got != "FFFSSF" {
		t.Errorf("retention 0.5, K 2: %s, want FFFSSF", got)
	}
}

// planLetters plans every call, validates each plan against a cache that holds what the calls
// before it kept, and returns F (stack kept) or S (stack skipped with its residual) per call.
func planLetters(t *testing.T, m Method, env Env) string {
	t.Helper()
	c := hook.NewCache(env.Layout)
	defer c.Reset()
	whole := hook.Span{From: 0, To: env.Layout.Depth - 1}
	var b strings.Builder
	for call := range env.Steps {
		p, err := m.Plan(call, env.Steps-1-call)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(env.Layout, c, env.Rows); err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		switch {
		case len(p.Skips) == 1 && p.Skips[0].Span == whole && p.Skips[0].Mode == hook.SkipResidual && len(p.Keep) == 0:
			b.WriteByte('S')
		case len(p.Skips) == 0 && len(p.Keep) == 1 && p.Keep[0] == whole:
			b.WriteByte('F')
			c.SetSpan(whole, tensors.FromValue([]float32{0}), tensors.FromValue([]float32{0}))
		default:
			t.Fatalf("call %d: skips %+v, keep %+v", call, p.Skips, p.Keep)
		}
		if !p.RangesOnly || p.Gate != nil {
			t.Fatalf("call %d: RangesOnly %v, gate %v", call, p.RangesOnly, p.Gate)
		}
		if err := m.Observe(call, env.Steps-1-call, p, c); err != nil {
			t.Fatal(err)
		}
		if typ := m.Notes()[0].Type; typ != map[byte]string{'S': "skip", 'F': "full"}[b.String()[call]] {
			t.Fatalf("call %d noted %q", call, typ)
		}
	}
	return b.String()
}

// Without calibrated ratios for this step count, magcache refuses to run and says what to do.
func TestMagCacheNeedsCalibration(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 10, Rows: 2}
	if _, _, err := New("magcache", nil, env); err == nil || !strings.Contains(err.Error(), "runbench calibrate") {
		t.Errorf("no calibration: %v", err)
	}
	env.Calibration = &Calibration{Model: "m", Sampler: "ddim", Steps: 10, TeaCache: []float64{1, 0}}
	if _, _, err := New("magcache", nil, env); err == nil || !strings.Contains(err.Error(), "runbench calibrate") {
		t.Errorf("calibration without ratios: %v", err)
	}
	env.Calibration.MagRatios = make([]float64, 20)
	if _, _, err := New("magcache", nil, env); err == nil || !strings.Contains(err.Error(), strconv.Itoa(20)) {
		t.Errorf("20 ratios for 10 calls: %v", err)
	}
	for _, bad := range []map[string]string{{"K": "0"}, {"retention_ratio": "1.5"}, {"thresh": "-1"}} {
		if _, _, err := New("magcache", bad, magEnv(make([]float64, 10))); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
