package harness_test

import (
	"context"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
)

// The recorder's uncached trajectory runs a DPM-Solver++ state of its own: method none follows it
// exactly, FORA drifts from it.
func TestRecorderDPMSolver(t *testing.T) {
	b, _ := engine.New("")
	m, err := dit.Load(b, golden.Path("dit/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	solver, _ := diffusion.NewDPMSolver(8, 2)
	x0 := golden.F32(t, golden.Open(t, "dit/sampling_ddpm.safetensors"), "x_init")[:2*4*8*8]
	l := m.Layout()
	deviation := map[string]float64{}
	for _, method := range []string{"none", "fora"} {
		params := map[string]string{}
		if method == "fora" {
			params["N"] = "3"
		}
		pol, _, err := methods.New(method, params, methods.Env{Layout: l, Steps: 8, Rows: 4})
		if err != nil {
			t.Fatal(err)
		}
		rec := harness.NewRecorder(b, harness.RecordLight, []int{0, 1}, 1)
		_, err = harness.Sample(context.Background(), m, harness.Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 1.5,
			XInit: x0, Labels: []int64{4, 9}, Policy: pol, Cache: hook.NewCache(l), Recorder: rec})
		stats := rec.Stats()
		rec.Close()
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		for _, s := range stats {
			if s.Module == "state" && s.Call == 7 && s.ErrRelL2 != nil {
				deviation[method] = *s.ErrRelL2
			}
		}
	}
	if d, ok := deviation["none"]; !ok || d > 1e-6 {
		t.Errorf("none: final state deviates from the uncached trajectory by %g (recorded: %v)", d, ok)
	}
	if !(deviation["fora"] > 0) {
		t.Errorf("fora: final deviation %g, want > 0", deviation["fora"])
	}
}
