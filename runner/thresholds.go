package runner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sort"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
)

// ThresholdParam is the parameter a threshold search varies.
const ThresholdParam = "thresh"

// Predict replays a method on the recording, offline: the method itself plans every call of
// every calibration batch, its gate decides on the statistics recorded for that call (against
// the reference the executor would hold: the previous call for TeaCache's, the last call that ran
// the range, per row, for FBCache's), and the executed FLOPs are billed as a run bills them. It
// returns the FLOPs speedup over computing everything. It is a prediction: the recorded
// statistics come from the uncached trajectory, and skipping moves a run away from it.
func (rec *Recording) Predict(method string, raw map[string]string, cal *methods.Calibration) (float64, error) {
	var full, exec int64
	for _, b := range rec.Batches {
		f, e, err := rec.replay(b, method, raw, cal)
		if err != nil {
			return 0, err
		}
		full, exec = full+f, exec+e
	}
	if exec <= 0 {
		return 0, fmt.Errorf("%s: the replay executed no FLOPs", method)
	}
	return float64(full) / float64(exec), nil
}

// replay runs one batch's calls under the method and returns the FLOPs of computing everything
// and those executed.
func (rec *Recording) replay(b *BatchRecording, method string, raw map[string]string, cal *methods.Calibration) (full, exec int64, err error) {
	S, l := rec.Steps, rec.Layout
	env := methods.Env{Layout: l, Steps: S, Rows: b.Rows, Seed: rec.Config.Seed, Samples: b.Samples, Calibration: cal}
	m, _, err := methods.New(method, raw, env)
	if err != nil {
		return 0, 0, err
	}
	fullPlan := hook.FullPlan(l)
	lastRan := make([]int, b.Rows) // per row, the last call that ran the gated range
	for k := range S {
		p, err := m.Plan(k, S-1-k)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: plan of call %d: %w", method, k, err)
		}
		if p == nil {
			p = fullPlan
		}
		if g := p.Gate; g != nil {
			if err := rec.decide(g, b, k, lastRan); err != nil {
				return 0, 0, fmt.Errorf("%s: call %d: %w", method, k, err)
			}
		}
		for _, f := range hook.ExecutedFLOPs(rec.counter, fullPlan, b.Rows) {
			full += f
		}
		for _, f := range hook.ExecutedFLOPs(rec.counter, p, b.Rows) {
			exec += f
		}
		if err := m.Observe(k, S-1-k, p, nil); err != nil {
			return 0, 0, fmt.Errorf("%s: observe call %d: %w", method, k, err)
		}
	}
	return full, exec, nil
}

// decide does for a recorded call what the executor does with a gate: the statistic per row (or
// pooled over the batch), the method's decision, and what it did written into the gate.
func (rec *Recording) decide(g *hook.Gate, b *BatchRecording, k int, lastRan []int) error {
	rows := b.Rows
	per := make([]L1, rows)
	switch {
	case g.Stat == hook.StatModulatedInput && g.Span.From == 0:
		if k > 0 {
			per = b.Tea[k]
		}
	case g.Stat == hook.StatResidual && g.Span.From == 1:
		if k > 0 {
			for r := range rows {
				per[r] = b.FB[k][lastRan[r]][r]
			}
		}
	default:
		return fmt.Errorf("the calibration measured TeaCache's statistic at block 0 and FBCache's after block 0; this gate measures %v before block %d",
			statName(g.Stat), g.Span.From)
	}
	stats := make([]float64, rows)
	for r := range rows {
		stats[r] = math.Inf(1)
		if k > 0 {
			stats[r] = per[r].Value()
		}
	}
	if g.PerBatch {
		stats = []float64{math.Inf(1)}
		if k > 0 {
			var s L1
			for _, x := range per {
				s.Num, s.Den = s.Num+x.Num, s.Den+x.Den
			}
			stats[0] = s.Value()
		}
	}
	skips, err := g.Decide(stats)
	if err != nil {
		return err
	}
	if len(skips) != len(stats) {
		return fmt.Errorf("%d decisions for %d statistics", len(skips), len(stats))
	}
	g.Stats, g.Skipped = stats, make([]bool, rows)
	for r := range rows {
		g.Skipped[r] = skips[min(r, len(skips)-1)]
		if g.Skipped[r] && k == 0 {
			return fmt.Errorf("row %d skips at the first call, with no residual stored", r)
		}
		if !g.Skipped[r] {
			lastRan[r] = k
		}
	}
	return nil
}

func statName(s hook.GateStat) string {
	if s == hook.StatResidual {
		return "the residual statistic"
	}
	return "the modulated-input statistic"
}

// ThresholdPick is the threshold a search predicts for a target speedup.
type ThresholdPick struct {
	Method    string
	Target    float64 // the FLOPs speedup asked for
	Threshold float64
	Predicted float64 // the replay's FLOPs speedup at Threshold
	// Reachable is false when no threshold reaches the target: Threshold is then the smallest
	// with the largest speedup the replay finds.
	Reachable bool
}

// Params are the method's parameters with the pick's threshold (raw holds the others).
func (p ThresholdPick) Params(raw map[string]string) map[string]string {
	out := maps.Clone(raw)
	if out == nil {
		out = map[string]string{}
	}
	out[ThresholdParam] = fmt.Sprint(p.Threshold)
	return out
}

// Search finds, for every target FLOPs speedup, the method's threshold whose replay (Predict)
// comes closest to it, with the other parameters fixed (raw, without thresh). Speedup grows
// with the threshold in steps (a call more or less skipped); the pick lies in the middle of its
// step, so that a run drifting slightly from the recorded statistics keeps the same decisions.
// Thresholds are returned in the order of the targets and never decrease as targets grow.
func (rec *Recording) Search(method string, raw map[string]string, cal *methods.Calibration, targets []float64) ([]ThresholdPick, error) {
	info, err := methods.Lookup(method)
	if err != nil {
		return nil, err
	}
	var param *methods.Param
	for i := range info.Params {
		if info.Params[i].Name == ThresholdParam {
			param = &info.Params[i]
		}
	}
	if param == nil || param.Kind != methods.Float {
		return nil, fmt.Errorf("method %s has no real parameter %s to search", method, ThresholdParam)
	}
	if _, given := raw[ThresholdParam]; given {
		return nil, fmt.Errorf("method %s: %s is what the search finds; do not fix it", method, ThresholdParam)
	}
	memo := map[float64]float64{}
	var perr error
	pred := func(t float64) float64 {
		if s, ok := memo[t]; ok {
			return s
		}
		s, err := rec.Predict(method, ThresholdPick{Threshold: t}.Params(raw), cal)
		if err != nil && perr == nil {
			perr = err
		}
		memo[t] = s
		return s
	}
	order := make([]int, len(targets))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return targets[order[a]] < targets[order[b]] })
	out := make([]ThresholdPick, len(targets))
	prev := param.Min
	for _, i := range order {
		t := targets[i]
		if !(t >= 1) {
			return nil, fmt.Errorf("target speedup %g: want ≥ 1", t)
		}
		pk := searchStep(pred, param.Min, param.Max, t)
		if perr != nil {
			return nil, perr
		}
		// pred is monotone in practice; should it not be, a larger target never gets a smaller
		// threshold.
		if pk.Threshold < prev {
			pk.Threshold, pk.Predicted = prev, pred(prev)
		}
		prev = pk.Threshold
		pk.Method, pk.Target = method, t
		out[i] = pk
	}
	return out, perr
}

// bisections bounds the search on one step boundary (float64 resolution on [0, 1000]).
const bisections = 64

// searchStep finds the step of pred (non-decreasing, piecewise constant) whose value is closest
// to target in ratio, and returns a threshold in its middle.
func searchStep(pred func(float64) float64, lo, hi, target float64) ThresholdPick {
	// split narrows (a, b], given ok(pred(b)), to the boundary where ok starts to hold: the
	// largest a seen without it and the smallest b with it.
	split := func(a, b float64, ok func(float64) bool) (float64, float64) {
		for range bisections {
			mid := a + (b-a)/2
			if mid <= a || mid >= b {
				break
			}
			if ok(pred(mid)) {
				b = mid
			} else {
				a = mid
			}
		}
		return a, b
	}
	first := func(a, b float64, ok func(float64) bool) float64 {
		_, b = split(a, b, ok)
		return b
	}
	// stepAt returns the step [from, to) of pred holding t.
	stepAt := func(t float64) (from, to float64) {
		v := pred(t)
		from = lo
		if pred(lo) != v {
			from = first(lo, t, func(s float64) bool { return s == v })
		}
		to = hi
		if pred(hi) != v {
			to = first(t, hi, func(s float64) bool { return s > v })
		}
		return from, to
	}
	middle := func(from, to float64) float64 {
		if to == hi && from > lo {
			// The last step reaches the parameter's maximum: stay near its start.
			return from * 1.25
		}
		return from + (to-from)/2
	}
	if top := pred(hi); top < target {
		from, _ := stepAt(hi)
		return ThresholdPick{Threshold: from, Predicted: top}
	}
	if pred(lo) >= target {
		from, to := stepAt(lo)
		t := middle(from, to)
		return ThresholdPick{Threshold: t, Predicted: pred(t), Reachable: true}
	}
	a, b := split(lo, hi, func(s float64) bool { return s >= target })
	above, below := pred(b), pred(a)
	fromA, toA := stepAt(b)
	fromB, toB := stepAt(a)
	from, to := fromA, toA
	if math.Abs(math.Log(below/target)) < math.Abs(math.Log(above/target)) {
		from, to = fromB, toB
	}
	t := middle(from, to)
	return ThresholdPick{Threshold: t, Predicted: pred(t), Reachable: true}
}

// MeasureSpeedup samples the calibration samples under a method, as a run would (same noise,
// labels and batches), and returns the FLOPs speedup its executed FLOPs give over computing
// everything, with its timing.
func MeasureSpeedup(ctx context.Context, job CalibrateJob, method string, raw map[string]string, cal *methods.Calibration) (float64, *harness.Timing, error) {
	c := job.Config
	kind, sched, solver, err := samplerOf(c)
	if err != nil {
		return 0, nil, err
	}
	l, spec := job.Model.Layout(), job.Model.Spec()
	S := sched.Steps()
	full := hook.FullPlan(l)
	var t harness.Timing
	var base int64
	done, total := 0, S*((c.NumSamples+job.BatchSize-1)/max(1, job.BatchSize))
	for lo := 0; lo < c.NumSamples; lo += job.BatchSize {
		idx := seq(lo, min(c.NumSamples, lo+job.BatchSize))
		rows := len(idx)
		if c.CFGScale > 1 {
			rows *= 2
		}
		pol, _, err := methods.New(method, raw, methods.Env{Layout: l, Steps: S, Rows: rows, Seed: c.Seed, Samples: idx, Calibration: cal})
		if err != nil {
			return 0, nil, err
		}
		var cache *hook.Cache
		if methods.NeedsCache(method) {
			cache = hook.NewCache(l)
		}
		xInit, ys, noise := sampleInputs(c, spec, len(job.Prompts), idx)
		req := harness.Request{Sampler: kind, Schedule: sched, Solver: solver, CFGScale: float32(c.CFGScale), GuideChannels: c.Guide,
			XInit: xInit, Labels: ys, Noise: noise, Policy: pol, Cache: cache,
			OnStep: func(s harness.StepInfo) error {
				t.Add(s, job.Model, full)
				for _, f := range hook.ExecutedFLOPs(job.Model, full, s.Rows) {
					base += f
				}
				done++
				if job.Progress != nil {
					job.Progress(done, total)
				}
				return nil
			}}
		_, err = harness.Sample(ctx, job.Model, req)
		if cache != nil {
			cache.Reset()
		}
		if err != nil {
			return 0, nil, err
		}
		t.Images += len(idx)
	}
	if t.FLOPs <= 0 {
		return 0, nil, fmt.Errorf("%s: no FLOPs executed", method)
	}
	return float64(base) / float64(t.FLOPs), &t, nil
}

// VerifyTolerance is how far a measured FLOPs speedup may fall from its target before a
// verification flags it.
const VerifyTolerance = 0.10

// Verified is a threshold pick sampled for real.
type Verified struct {
	ThresholdPick
	Measured float64 // the executed FLOPs speedup on the calibration samples
	// Miss is set when Measured is more than VerifyTolerance away from the target.
	Miss bool
}

// Verify samples the calibration samples with a pick's threshold (the method's other parameters
// in raw) and compares the executed FLOPs speedup with the target.
func Verify(ctx context.Context, job CalibrateJob, cal *methods.Calibration, pick ThresholdPick, raw map[string]string) (Verified, error) {
	got, _, err := MeasureSpeedup(ctx, job, pick.Method, pick.Params(raw), cal)
	if err != nil {
		return Verified{}, err
	}
	return Verified{ThresholdPick: pick, Measured: got, Miss: math.Abs(got/pick.Target-1) > VerifyTolerance}, nil
}
