package main

import (
	"fmt"
	"io"
	"time"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
)

// timing accumulates the wall clock of sampling calls, split by where it went, and the FLOPs
// the plans that ran cost.
type timing struct {
	calls                     int
	images                    int
	forward, overhead, update time.Duration
	flops                     int64
}

func (t *timing) add(s harness.StepInfo, counter hook.FLOPsCounter, full *hook.Plan) {
	t.calls++
	t.forward += s.Forward
	t.overhead += s.Overhead
	t.update += s.Update
	p := s.Plan
	if p == nil {
		p = full
	}
	for _, f := range counter.BlockFLOPs(p, s.Rows) {
		t.flops += f
	}
}

func (t *timing) merge(o timing) {
	t.calls += o.calls
	t.images += o.images
	t.forward += o.forward
	t.overhead += o.overhead
	t.update += o.update
	t.flops += o.flops
}

func (t *timing) wall() time.Duration { return t.forward + t.overhead + t.update }

func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(max(n, 1)) }

// report prints the timing of a method, and its realized speedup next to its FLOPs speedup when
// a baseline was measured on the same inputs.
func (t *timing) report(w io.Writer, method string, base *timing) {
	fmt.Fprintf(w, "%s: %d calls, %d images: %.3f s/image, %.2f ms/call (forward %.2f, policy overhead %.2f = %.1f%%, sampler %.2f)\n",
		method, t.calls, t.images, t.wall().Seconds()/float64(max(t.images, 1)), ms(t.wall(), t.calls), ms(t.forward, t.calls),
		ms(t.overhead, t.calls), 100*t.overhead.Seconds()/max(t.wall().Seconds(), 1e-9), ms(t.update, t.calls))
	if base != nil && base.flops > 0 && t.flops > 0 {
		fs := float64(base.flops) / float64(t.flops)
		ws := base.wall().Seconds() / t.wall().Seconds()
		fmt.Fprintf(w, "  FLOPs speedup %.3fx, wall-clock speedup %.3fx over none on the same inputs (ratio %.3f)\n", fs, ws, ws/fs)
	}
}

// storeTimings turns the accumulated timing into store rows.
func (t *timing) storeTimings() []store.Timing {
	return []store.Timing{
		{Scope: "step", Name: "forward", Count: t.calls, TotalMS: ms(t.forward, 1)},
		{Scope: "step", Name: "overhead:policy", Count: t.calls, TotalMS: ms(t.overhead, 1)},
		{Scope: "step", Name: "sampler", Count: t.calls, TotalMS: ms(t.update, 1)},
		{Scope: "image", Name: "sample", Count: t.images, TotalMS: ms(t.wall(), 1)},
	}
}
