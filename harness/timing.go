package harness

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
)

// Timing accumulates the wall clock of sampling calls, split by where it went, and the FLOPs
// of the plans that ran.
type Timing struct {
	Calls, Images             int
	Forward, Overhead, Update time.Duration
	Record                    time.Duration    // recorder (not in Wall: it is measurement, not sampling)
	Compile                   time.Duration    // graph compilation (not in Wall: a JIT backend's one-time cost)
	Decode, Features          time.Duration    // VAE decoding and feature extraction of the images (not in Wall)
	CacheBytes                map[string]int64 // the cache's memory at its largest call, by kind (nil: no cache)
	FLOPs                     int64
}

// Add accounts one call.
func (t *Timing) Add(s StepInfo, counter hook.FLOPsCounter, full *hook.Plan) {
	t.Calls++
	t.Forward += s.Forward
	t.Overhead += s.Overhead
	t.Update += s.Update
	t.Record += s.Record
	t.Compile += s.Compile
	t.peakCache(s.CacheBytes)
	p := s.Plan
	if p == nil {
		p = full
	}
	for _, f := range hook.ExecutedFLOPs(counter, p, s.Rows) {
		t.FLOPs += f
	}
}

// Merge adds another timing.
func (t *Timing) Merge(o Timing) {
	t.Calls += o.Calls
	t.Images += o.Images
	t.Forward += o.Forward
	t.Overhead += o.Overhead
	t.Update += o.Update
	t.Record += o.Record
	t.Compile += o.Compile
	t.Decode += o.Decode
	t.Features += o.Features
	t.peakCache(o.CacheBytes)
	t.FLOPs += o.FLOPs
}

// peakCache keeps the larger of two cache memories (by total).
func (t *Timing) peakCache(b map[string]int64) {
	if b != nil && (t.CacheBytes == nil || b["total"] > t.CacheBytes["total"]) {
		t.CacheBytes = b
	}
}

// Wall is the total measured time.
func (t *Timing) Wall() time.Duration { return t.Forward + t.Overhead + t.Update }

func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(max(n, 1)) }

// Report prints the timing of a method, and its realized speedup next to its FLOPs speedup
// when a baseline was measured on the same inputs.
func (t *Timing) Report(w io.Writer, method string, base *Timing) {
	fmt.Fprintf(w, "%s: %d calls, %d images: %.3f s/image, %.2f ms/call (forward %.2f, policy overhead %.2f = %.1f%%, sampler %.2f)\n",
		method, t.Calls, t.Images, t.Wall().Seconds()/float64(max(t.Images, 1)), ms(t.Wall(), t.Calls), ms(t.Forward, t.Calls),
		ms(t.Overhead, t.Calls), 100*t.Overhead.Seconds()/max(t.Wall().Seconds(), 1e-9), ms(t.Update, t.Calls))
	if t.Compile > 0 {
		fmt.Fprintf(w, "  graph compilation: %.2f s (not in the timings above)\n", t.Compile.Seconds())
	}
	if t.Decode > 0 || t.Features > 0 {
		rate := func(d time.Duration) float64 { return float64(t.Images) / max(d.Seconds(), 1e-9) }
		fmt.Fprintf(w, "  per stage: sampling %.2f images/s", rate(t.Wall()))
		if t.Decode > 0 {
			fmt.Fprintf(w, ", VAE decoding %.2f images/s", rate(t.Decode))
		}
		if t.Features > 0 {
			fmt.Fprintf(w, ", features %.2f images/s", rate(t.Features))
		}
		fmt.Fprintln(w)
	}
	if t.CacheBytes != nil {
		fmt.Fprintf(w, "  cache memory: peak %s (%s)\n", mib(t.CacheBytes["total"]), cacheKinds(t.CacheBytes))
	}
	if t.Record > 0 {
		fmt.Fprintf(w, "  recording: %.2f ms/call (%.1f%% of sampling)\n", ms(t.Record, t.Calls), 100*t.Record.Seconds()/max(t.Wall().Seconds(), 1e-9))
	}
	if base != nil && base.FLOPs > 0 && t.FLOPs > 0 {
		fs := float64(base.FLOPs) / float64(t.FLOPs)
		ws := base.Wall().Seconds() / t.Wall().Seconds()
		fmt.Fprintf(w, "  FLOPs speedup %.3fx, wall-clock speedup %.3fx over none on the same inputs (ratio %.3f)\n", fs, ws, ws/fs)
	}
}

// StoreRows turns the timing into store rows.
func (t *Timing) StoreRows() []store.Timing {
	return []store.Timing{
		{Scope: "step", Name: "forward", Count: t.Calls, TotalMS: ms(t.Forward, 1)},
		{Scope: "step", Name: "overhead:policy", Count: t.Calls, TotalMS: ms(t.Overhead, 1)},
		{Scope: "step", Name: "sampler", Count: t.Calls, TotalMS: ms(t.Update, 1)},
		{Scope: "image", Name: "sample", Count: t.Images, TotalMS: ms(t.Wall(), 1)},
		{Scope: "step", Name: "overhead:record", Count: t.Calls, TotalMS: ms(t.Record, 1)},
		{Scope: "run", Name: "compile", Count: t.Calls, TotalMS: ms(t.Compile, 1)},
	}
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// cacheKinds lists the kinds of a cache memory, largest first.
func cacheKinds(b map[string]int64) string {
	var kinds []string
	for k, n := range b {
		if k != "total" && n > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Slice(kinds, func(i, j int) bool {
		return b[kinds[i]] > b[kinds[j]] || (b[kinds[i]] == b[kinds[j]] && kinds[i] < kinds[j])
	})
	var parts []string
	for _, k := range kinds {
		parts = append(parts, k+" "+mib(b[k]))
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}
