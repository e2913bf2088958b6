package methods_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
)

// benchConfigs are the method settings the speedup benchmark compares with none.
var benchConfigs = []struct {
	name   string
	method string
	params map[string]string
}{
	{"none", "none", nil},
	{"fora_N3", "fora", map[string]string{"N": "3"}},
	{"toca_N3_r0.07", "toca", map[string]string{"N": "3", "ratio": "0.07"}},
	{"toca_N5_r0.07", "toca", map[string]string{"N": "5", "ratio": "0.07"}},
	{"toca_N3_similarity", "toca", map[string]string{"N": "3", "ratio": "0.07", "score": "similarity"}},
	{"duca_N3_r0.05", "duca", map[string]string{"N": "3", "ratio": "0.05"}},
	{"taylorseer_N3_O2", "taylorseer", map[string]string{"N": "3", "order": "2"}},
	{"deltadit_N2", "deltadit", map[string]string{"N": "2"}},
}

// BenchmarkMethodSpeedup samples DDIM-50 with CFG (1 image, 2 rows) on the golden caching model
// (256 tokens, the token grid of DiT-XL/2 at 256²) under each method and reports its FLOPs
// speedup, its wall-clock speedup over none and their ratio (the target is ≥ 0.95).
// Background load drifts, so none and the method are timed back to back, reps times, and the
// median of the per-pair speedups is reported. Run with -benchtime 1x.
func BenchmarkMethodSpeedup(b *testing.B) {
	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := dit.Load(be, golden.Path("caching/weights.safetensors"), 4)
	if err != nil {
		b.Fatal(err)
	}
	g := golden.Open(b, "caching/baseline.safetensors")
	x0, y := golden.F32(b, g, "x_init")[:4*32*32], golden.I64(b, g, "y")[:1]
	sched, _ := diffusion.NewSchedule(1000, "50")
	l := m.Layout()
	full := hook.FullPlan(l)
	sample := func(method string, params map[string]string) (time.Duration, int64) {
		pol, _, err := methods.New(method, params, methods.Env{Layout: l, Steps: 50, Rows: 2})
		if err != nil {
			b.Fatal(err)
		}
		var flops int64
		t0 := time.Now()
		_, err = harness.Sample(context.Background(), m, harness.Request{Sampler: diffusion.DDIM, Schedule: sched, CFGScale: 1.5,
			XInit: x0, Labels: y, Policy: pol, Cache: hook.NewCache(l),
			OnStep: func(s harness.StepInfo) error {
				p := s.Plan
				if p == nil {
					p = full
				}
				for _, f := range m.BlockFLOPs(p, s.Rows) {
					flops += f
				}
				return nil
			}})
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), flops
	}
	const reps = 3
	for _, c := range benchConfigs[1:] {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				sample(c.method, c.params) // compiles this method's graph variants
				var speedups []float64
				var fs float64
				for range reps {
					tb, fb := sample("none", nil)
					tm, fm := sample(c.method, c.params)
					speedups = append(speedups, tb.Seconds()/tm.Seconds())
					fs = float64(fb) / float64(fm)
				}
				slices.Sort(speedups)
				ws := speedups[reps/2]
				b.ReportMetric(fs, "flops_speedup")
				b.ReportMetric(ws, "wall_speedup")
				b.ReportMetric(ws/fs, "wall/flops")
			}
		})
	}
}
