package harness_test

import (
	"context"
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

// BenchmarkRecording reports the recorder's cost as a share of sampling time (ToCa, DDIM-20,
// CFG, 2 images on the golden caching model: 256 tokens, width 64) for off, light and full
// recording without audit, and full with one audited image. The target for light is ≤ 3 %.
// The share shrinks with model width (statistics are O(N·D) per module, the module O(N·D²)).
func BenchmarkRecording(b *testing.B) {
	be, _ := engine.New("")
	m, err := dit.Load(be, golden.Path("caching/weights.safetensors"), 4)
	if err != nil {
		b.Fatal(err)
	}
	sched, _ := diffusion.NewSchedule(1000, "20")
	l := m.Layout()
	x0 := make([]float32, 2*4*32*32)
	diffusion.NewNoise(1, 0).Fill(x0)
	for _, c := range []struct {
		name  string
		level harness.Level
		audit int
	}{{"off", harness.RecordOff, 0}, {"light", harness.RecordLight, 0}, {"full", harness.RecordFull, 0}, {"full_audit1", harness.RecordFull, 1}} {
		b.Run(c.name, func(b *testing.B) {
			var sampling, record time.Duration
			for b.Loop() {
				pol, _, _ := methods.New("toca", map[string]string{"N": "3"}, methods.Env{Layout: l, Steps: 20, Rows: 4})
				req := harness.Request{Sampler: diffusion.DDIM, Schedule: sched, CFGScale: 1.5, XInit: x0, Labels: []int64{1, 2},
					Policy: pol, Cache: hook.NewCache(l),
					OnStep: func(s harness.StepInfo) error {
						sampling += s.Forward + s.Overhead + s.Update
						record += s.Record
						return nil
					}}
				if c.level != harness.RecordOff {
					rec := harness.NewRecorder(be, c.level, []int{0, 1}, c.audit)
					req.Recorder = rec
					defer rec.Close()
				}
				if _, err := harness.Sample(context.Background(), m, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(100*record.Seconds()/sampling.Seconds(), "record_%")
		})
	}
}
