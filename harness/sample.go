// Package harness is the ground floor the rest stands on: the sampling loop of one batch under
// a policy (Sample), the per-step recorder and the timing split, and in sub-packages the hook
// surface, the plan executor, the samplers, backend selection and the results store. It imports
// no method, model or experiment; runs, sweeps and their metrics are package runner's.
package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
)

// DefaultGuideChannels is the number of ε channels the DiT reference guides (channels 0–2).
const DefaultGuideChannels = 3

// Request describes one sampling run of a batch.
type Request struct {
	Sampler  diffusion.Kind
	Schedule *diffusion.Schedule
	// CFGScale > 1 turns on classifier-free guidance (as DiT's sample.py): the state holds the
	// conditional rows followed by null-label copies, and the model reads only the first half.
	CFGScale float32
	// GuideChannels is how many output channels guidance touches (3 = DiT reference,
	// diffusion.GuidanceAll = all ε channels, as diffusers does).
	GuideChannels int
	// XInit is the starting noise of the images, [B, C, H, W], or of the whole CFG state
	// [2B, C, H, W] (then its second half is the null rows' state).
	XInit  []float32
	Labels []int64 // B class labels
	// Noise fills the DDPM noise of the whole state at call k (nil = zero noise).
	Noise func(call int, dst []float32) error
	// Policy plans every call (nil = compute everything); Cache holds module outputs and must be
	// set when the policy reuses anything.
	Policy hook.Policy
	Cache  *hook.Cache
	// OnStep receives every call's results (state after the update, predicted x₀, guided model output).
	OnStep func(StepInfo) error
	// Recorder, when set, measures feature dynamics and (on its audit rows) cache errors.
	Recorder *Recorder
	// Tokens copies the tokens chosen on the device into each plan (traces); the recorder asks
	// for them itself when it needs them.
	Tokens bool
	// Choices, when set, sees every device token choice (hook.Options.Choices).
	Choices func(block int, module hook.Module, scoreIn [][]float32, chosen [][]int32)
	// DeviceChoice ranks every token choice inside the graph (hook.Options.DeviceChoice).
	DeviceChoice bool
}

// StepInfo is what a sampling call produced.
type StepInfo struct {
	Call       int   // 0 … steps-1
	Step       int   // respaced index (counts down)
	Timestep   int64 // original timestep the model received
	X          []float32
	PredXStart []float32
	ModelOut   []float32
	Plan       *hook.Plan    // the plan carried out (nil = everything computed)
	Rows       int           // batch rows of the model call (2B with CFG)
	Forward    time.Duration // wall time of the model call
	Overhead   time.Duration // wall time of the policy's Plan and Observe (host decisions; scores and top-k run in the forward)
	Compile    time.Duration // graph compilation during the call (new shapes), not in Forward
	Update     time.Duration // wall time of CFG and the sampler update (includes the guidance and noise)
	Record     time.Duration // wall time of the recorder (dynamics, audit passes), not in the above
}

// Result is a finished batch.
type Result struct {
	Sample []float32 // [B, C, H, W], the image rows of the final state
	State  []float32 // the whole final state (with CFG: 2B rows)
}

// Sample runs the reverse process on one batch. It stops early, with ctx's error, when ctx ends.
func Sample(ctx context.Context, m hook.Model, r Request) (Result, error) {
	spec := m.Spec()
	B := len(r.Labels)
	per := spec.Channels * spec.Height * spec.Width
	if B == 0 {
		return Result{}, fmt.Errorf("sample: no labels")
	}
	for i, y := range r.Labels {
		if y < 0 || y > int64(spec.NumClasses) {
			return Result{}, fmt.Errorf("sample: label %d of image %d out of range [0, %d] (%d = null)", y, i, spec.NumClasses, spec.NumClasses)
		}
	}
	cfg := r.CFGScale > 1
	rows := B
	if cfg {
		rows = 2 * B
	}
	var x []float32
	switch len(r.XInit) {
	case B * per:
		x = append([]float32(nil), r.XInit...)
		if cfg {
			x = append(x, r.XInit...)
		}
	case rows * per:
		x = append([]float32(nil), r.XInit...)
	default:
		return Result{}, fmt.Errorf("sample: initial noise has %d values, want %d (%d images of %d×%d×%d) or %d with the CFG null rows",
			len(r.XInit), B*per, B, spec.Channels, spec.Height, spec.Width, rows*per)
	}
	labels := append([]int64(nil), r.Labels...)
	if cfg {
		for range B {
			labels = append(labels, int64(spec.NumClasses))
		}
	}
	guide := r.GuideChannels
	if guide == 0 {
		guide = DefaultGuideChannels
	}
	steps := r.Schedule.Steps()
	noise := make([]float32, len(x))
	t := make([]float64, rows)
	for k := range steps {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		i := steps - 1 - k
		for j := range t {
			t[j] = float64(r.Schedule.TimestepMap[i])
		}
		in := x
		if cfg { // forward_with_cfg reads the first half only
			in = append(append(make([]float32, 0, len(x)), x[:B*per]...), x[:B*per]...)
		}
		opt := hook.Options{Cache: r.Cache}
		tPlan := time.Now()
		if r.Policy != nil {
			p, err := r.Policy.Plan(k, i)
			if err != nil {
				return Result{}, fmt.Errorf("sample: plan of call %d: %w", k, err)
			}
			opt.Plan = p
		}
		planTime := time.Since(tPlan)
		rec := r.Recorder
		if rec != nil {
			rec.begin(k, i, r.Schedule.TimestepMap[i], planOr(opt.Plan, m.Layout()), rows)
			opt.Modules = rec.module
		}
		opt.Tokens = r.Tokens || rec.needsTokens()
		opt.Choices, opt.DeviceChoice = r.Choices, r.DeviceChoice
		c0 := compileTime(m)
		t0 := time.Now()
		out, err := m.Forward(in, t, labels, opt)
		if err != nil {
			return Result{}, fmt.Errorf("sample: call %d (t=%d): %w", k, r.Schedule.TimestepMap[i], err)
		}
		// Graphs compiled during the call (new shapes on a JIT backend) are not execution time.
		compile := compileTime(m) - c0
		forward := time.Since(t0) - compile
		tObs := time.Now()
		if r.Policy != nil {
			if err := r.Policy.Observe(k, i, opt.Plan, r.Cache); err != nil {
				return Result{}, fmt.Errorf("sample: observe call %d: %w", k, err)
			}
		}
		overhead := planTime + time.Since(tObs)
		var recordTime time.Duration
		var raw []float32
		if rec != nil {
			tr := time.Now()
			// The module hook ran inside Forward; take its time out of the forward.
			recordTime = rec.takeHookTime()
			forward -= recordTime
			raw = append([]float32(nil), out...)
			if err := rec.audited(m, in, t, labels, raw, spec); err != nil {
				return Result{}, fmt.Errorf("sample: record call %d: %w", k, err)
			}
			recordTime += time.Since(tr)
		}
		t1 := time.Now()
		if cfg {
			if err := diffusion.GuideCFG(out, rows, spec.OutChannels(), spec.Channels, guide, r.CFGScale); err != nil {
				return Result{}, fmt.Errorf("sample: %w", err)
			}
		}
		var nz []float32
		if r.Sampler.NeedsNoise() && r.Noise != nil {
			if err := r.Noise(k, noise); err != nil {
				return Result{}, fmt.Errorf("sample: noise of call %d: %w", k, err)
			}
			nz = noise
		}
		res, err := r.Schedule.Step(r.Sampler, i, x, out, rows, spec.Channels, spec.LearnSigma, nz)
		if err != nil {
			return Result{}, fmt.Errorf("sample: call %d: %w", k, err)
		}
		update := time.Since(t1)
		if rec != nil {
			tr := time.Now()
			if err := rec.trajectory(m, r, k, i, t, labels, guide, nz, spec, x); err != nil {
				return Result{}, fmt.Errorf("sample: record call %d: %w", k, err)
			}
			var flops int64
			if fc, ok := m.(hook.FLOPsCounter); ok {
				for _, f := range fc.BlockFLOPs(planOr(opt.Plan, m.Layout()), rows) {
					flops += f
				}
			}
			rec.endCall(raw, res.X, flops)
			recordTime += time.Since(tr)
		}
		x = res.X
		if r.OnStep != nil {
			if err := r.OnStep(StepInfo{Call: k, Step: i, Timestep: r.Schedule.TimestepMap[i], X: x, PredXStart: res.PredXStart, ModelOut: out,
				Plan: opt.Plan, Rows: rows, Forward: forward, Overhead: overhead, Update: update, Record: recordTime, Compile: compile}); err != nil {
				return Result{}, err
			}
		}
	}
	return Result{Sample: x[:B*per], State: x}, nil
}

// planOr returns the plan, or the full plan of a layout when nil.
func planOr(p *hook.Plan, l hook.Layout) *hook.Plan {
	if p != nil {
		return p
	}
	return hook.FullPlan(l)
}

// compileTime is the model's cumulative graph-compilation time, or 0 for a model that does not
// report it.
func compileTime(m hook.Model) time.Duration {
	if c, ok := m.(hook.Compiler); ok {
		return c.CompileTime()
	}
	return 0
}
