// Package harness is the ground floor the rest stands on: the sampling loop of one batch under
// a policy (Sample), the per-step recorder and the timing split, and in sub-packages the hook
// surface, the plan executor, the samplers, backend selection and the results store. It imports
// no method, model or experiment; runs, sweeps and their metrics are package runner's.
package harness

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
)

// DefaultGuideChannels is the number of ε channels the DiT reference guides (channels 0–2).
const DefaultGuideChannels = 3

// NullLabeler is a model that chooses the CFG null label of each row itself: PixArt-α's null
// caption keeps the attention mask of the row's prompt, so it depends on the prompt.
type NullLabeler interface {
	NullLabel(y int64) int64 // the null row's label for an image row of label y
}

// Request describes one sampling run of a batch.
type Request struct {
	Sampler diffusion.Kind
	// Schedule drives DDPM and DDIM. With diffusion.DPMSolverPP, Solver drives the sampling and
	// Schedule may be nil (when set, it must have as many steps).
	Schedule *diffusion.Schedule
	Solver   *diffusion.DPMSolver
	// PLMS drives diffusion.PLMS (Stable Diffusion v1's sampler; Schedule must be nil: PLMS runs
	// on the LDM schedule it was built with). Its first step takes two model calls, so a run of
	// S steps makes S+1 calls.
	PLMS *diffusion.PLMSSampler
	// CFGScale > 1 turns on classifier-free guidance (as DiT's sample.py): the state holds the
	// conditional rows followed by null-label copies, and the model reads only the first half.
	CFGScale float32
	// GuideChannels is how many output channels guidance touches (3 = DiT reference,
	// diffusion.GuidanceAll = all ε channels, as diffusers does). 0 is the sampler's reference:
	// 3 for DDPM and DDIM, all ε channels for DPM-Solver++ (PixArt-α's wrapper) and PLMS (ldm's).
	GuideChannels int
	// XInit is the starting noise of the images, [B, C, H, W], or of the whole CFG state
	// [2B, C, H, W] (then its second half is the null rows' state).
	XInit  []float32
	Labels []int64 // B class labels
	// Noise fills the DDPM noise of the whole state at call k (nil = zero noise).
	Noise func(call int, dst []float32) error
	// Policy plans every call (nil = compute everything); Cache holds module outputs and must be
	// set when the policy reuses anything. Plan(call, step) gets step = steps-1-call with the
	// one-call-per-step samplers: DiT's methods count steps down, PixArt-α's count up and read
	// call. With PLMS, step is steps-1-(the sampler step the call belongs to): calls 0 and 1 are
	// both step steps-1 (predictor and corrector of the first step), call k > 1 is steps-k, so
	// call runs to steps while step stays in [0, steps).
	Policy hook.Policy
	Cache  *hook.Cache
	// OnStep receives every call's results (state after the update, predicted x₀, guided model
	// output). A call that does not finish a sampler step (PLMS's call 0) comes with Complete
	// false and no X or PredXStart: its predictor state is not a state of the trajectory.
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
	Call       int     // 0 … steps-1 (PLMS: 0 … steps)
	Step       int     // respaced index (counts down): steps-1-Call (PLMS: see Request.Policy)
	Complete   bool    // the call finished a sampler step (always, but for PLMS's call 0)
	Timestep   int64   // original timestep the model received, rounded (DPM-Solver++'s are fractional)
	Time       float64 // the exact timestep the model received
	X          []float32
	PredXStart []float32
	ModelOut   []float32
	Plan       *hook.Plan       // the plan carried out (nil = everything computed)
	Rows       int              // batch rows of the model call (2B with CFG)
	Forward    time.Duration    // wall time of the model call
	Overhead   time.Duration    // wall time of the policy's Plan and Observe (host decisions; scores and top-k run in the forward)
	Compile    time.Duration    // graph compilation during the call (new shapes), not in Forward
	CacheBytes map[string]int64 // the cache's memory after the call, by kind (hook.Cache.Bytes); nil without a cache
	Update     time.Duration    // wall time of CFG and the sampler update (includes the guidance and noise)
	Record     time.Duration    // wall time of the recorder (dynamics, audit passes), not in the above
}

// Result is a finished batch.
type Result struct {
	Sample []float32 // [B, C, H, W], the image rows of the final state
	State  []float32 // the whole final state (with CFG: 2B rows)
}

// Sample runs the reverse process on one batch. It stops early, with ctx's error, when ctx ends.
func Sample(ctx context.Context, m hook.Model, r Request) (Result, error) {
	s, err := newSampling(m, r)
	if err != nil {
		return Result{}, err
	}
	for k := range s.steps {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		if err := s.call(k); err != nil {
			return Result{}, err
		}
	}
	return Result{Sample: s.x[:s.B*s.per], State: s.x}, nil
}

// sampling is one batch's reverse process: the request checked once and the state every call
// reads and replaces.
type sampling struct {
	m    hook.Model
	r    Request
	spec hook.Spec

	B, per, rows int     // images, values per image, model rows (2B with CFG)
	cfg          bool    // classifier-free guidance on
	guide        int     // output channels guidance touches
	steps        int     // sampling calls
	labels       []int64 // the model's labels: B classes, then B null labels with CFG
	x            []float32
	noise        []float32 // the DDPM noise buffer, refilled every call
	t            []float64 // the model's timestep per row, refilled every call
	step         stepper   // the sampler update of the state
	plms         *diffusion.PLMSState
	plmsCall     diffusion.PLMSCall // the call the PLMS state asked for, during a call
}

// stepper applies call k's update (respaced index i) to a trajectory's state x of rows rows,
// given the guided model output; noise is DDPM's (nil = none). DPM-Solver++ remembers earlier
// predictions, so every trajectory (the state, the recorder's uncached one) has its own.
type stepper func(k, i int, x, out []float32, rows int, noise []float32) (diffusion.StepResult, error)

// newStepper starts a trajectory's sampler update.
func (r Request) newStepper(spec hook.Spec) stepper {
	if r.Sampler != diffusion.DPMSolverPP {
		return func(_, i int, x, out []float32, rows int, noise []float32) (diffusion.StepResult, error) {
			return r.Schedule.Step(r.Sampler, i, x, out, rows, spec.Channels, spec.LearnSigma, noise)
		}
	}
	st := r.Solver.NewState()
	return func(k, _ int, x, out []float32, rows int, _ []float32) (diffusion.StepResult, error) {
		// Learned-variance channels play no part in DPM-Solver++.
		eps, err := diffusion.EpsChannels(out, rows, spec.OutChannels(), spec.Channels)
		if err != nil {
			return diffusion.StepResult{}, err
		}
		return st.Step(k, x, eps)
	}
}

// timestep is the model's timestep at call k (respaced index i); PLMS's comes from its state.
func (r Request) timestep(k, i int) float64 {
	if r.Sampler == diffusion.DPMSolverPP {
		return float64(r.Solver.ModelTime(k))
	}
	return float64(r.Schedule.TimestepMap[i])
}

// sampleSteps checks the sampler's configuration and returns its number of calls.
func (r Request) sampleSteps() (int, error) {
	switch {
	case r.Sampler == diffusion.PLMS && r.PLMS == nil:
		return 0, fmt.Errorf("sample: sampler %s needs a PLMS configuration (diffusion.NewPLMS)", r.Sampler)
	case r.Sampler == diffusion.PLMS && r.Schedule != nil:
		return 0, fmt.Errorf("sample: sampler %s runs on its own LDM schedule; the request's DDPM schedule must be nil", r.Sampler)
	case r.Sampler == diffusion.PLMS:
		return r.PLMS.Calls(), nil
	case r.Sampler != diffusion.PLMS && r.PLMS != nil:
		return 0, fmt.Errorf("sample: a PLMS configuration with sampler %s", r.Sampler)
	case r.Sampler == diffusion.DPMSolverPP && r.Solver == nil:
		return 0, fmt.Errorf("sample: sampler %s needs a solver (diffusion.NewDPMSolver)", r.Sampler)
	case r.Sampler == diffusion.DPMSolverPP:
		if r.Schedule != nil && r.Schedule.Steps() != r.Solver.Steps() {
			return 0, fmt.Errorf("sample: schedule of %d steps with a solver of %d", r.Schedule.Steps(), r.Solver.Steps())
		}
		return r.Solver.Steps(), nil
	case r.Schedule == nil:
		return 0, fmt.Errorf("sample: sampler %q needs a schedule", r.Sampler)
	}
	return r.Schedule.Steps(), nil
}

// newSampling checks the request against the model and builds the starting state, with the
// null-label rows appended when CFG is on, so the loop itself never has to validate.
func newSampling(m hook.Model, r Request) (*sampling, error) {
	spec := m.Spec()
	B := len(r.Labels)
	per := spec.Channels * spec.Height * spec.Width
	if B == 0 {
		return nil, fmt.Errorf("sample: no labels")
	}
	steps, err := r.sampleSteps()
	if err != nil {
		return nil, err
	}
	nl, custom := m.(NullLabeler)
	for i, y := range r.Labels {
		switch {
		case custom && (y < 0 || y >= int64(spec.NumClasses)):
			return nil, fmt.Errorf("sample: label %d of image %d out of range [0, %d)", y, i, spec.NumClasses)
		case y < 0 || y > int64(spec.NumClasses):
			return nil, fmt.Errorf("sample: label %d of image %d out of range [0, %d] (%d = null)", y, i, spec.NumClasses, spec.NumClasses)
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
		return nil, fmt.Errorf("sample: initial noise has %d values, want %d (%d images of %d×%d×%d) or %d with the CFG null rows",
			len(r.XInit), B*per, B, spec.Channels, spec.Height, spec.Width, rows*per)
	}
	labels := append([]int64(nil), r.Labels...)
	if cfg {
		for _, y := range r.Labels {
			if custom {
				labels = append(labels, nl.NullLabel(y))
			} else {
				labels = append(labels, int64(spec.NumClasses))
			}
		}
	}
	guide := r.GuideChannels
	switch {
	case guide == 0 && (r.Sampler == diffusion.DPMSolverPP || r.Sampler == diffusion.PLMS):
		guide = diffusion.GuidanceAll
	case guide == 0:
		guide = DefaultGuideChannels
	}
	s := &sampling{m: m, r: r, spec: spec, B: B, per: per, rows: rows, cfg: cfg, guide: guide,
		steps: steps, labels: labels, x: x, noise: make([]float32, len(x)), t: make([]float64, rows)}
	if r.Sampler == diffusion.PLMS {
		if spec.LearnSigma {
			return nil, fmt.Errorf("sample: PLMS needs a model that predicts ε only (no learned variance)")
		}
		s.plms = r.PLMS.NewState(x)
	} else {
		s.step = r.newStepper(spec)
	}
	return s, nil
}

// call runs sampling call k: plan, forward, observe, record, guidance and sampler update, then
// hands the results to OnStep. It fills the timing split of the StepInfo as it goes.
func (s *sampling) call(k int) error {
	i := s.steps - 1 - k
	state := s.x
	var t float64
	if s.plms != nil {
		c, ok := s.plms.Next()
		if !ok || c.Call != k {
			return fmt.Errorf("sample: call %d: the PLMS state expects call %d (done: %t)", k, c.Call, !ok)
		}
		s.plmsCall, state = c, c.X
		i, t = s.r.PLMS.Steps()-1-c.Step, float64(c.T)
	} else {
		t = s.r.timestep(k, i)
	}
	info := StepInfo{Call: k, Step: i, Timestep: int64(math.Round(t)), Time: t, Rows: s.rows}
	for j := range s.t {
		s.t[j] = t
	}
	in := s.modelInput(state)
	opt, planTime, err := s.options(k, i, info.Timestep)
	if err != nil {
		return err
	}
	info.Plan = opt.Plan
	out, err := s.forward(in, opt, &info)
	if err != nil {
		return err
	}
	if err := s.observe(k, i, opt.Plan, planTime, &info); err != nil {
		return err
	}
	raw, err := s.audit(k, in, out, &info)
	if err != nil {
		return err
	}
	res, nz, err := s.update(k, i, out, &info)
	if err != nil {
		return err
	}
	if err := s.recordTrajectory(k, i, opt.Plan, nz, raw, res.X, &info); err != nil {
		return err
	}
	info.Complete = res.X != nil
	if info.Complete {
		s.x = res.X
	}
	if s.r.OnStep != nil {
		info.ModelOut = out
		if info.Complete {
			info.X, info.PredXStart = s.x, res.PredXStart
		}
		if err := s.r.OnStep(info); err != nil {
			return err
		}
	}
	return nil
}

// modelInput is what the model reads of a state (the trajectory's, or PLMS's predictor state):
// the state, or with CFG its first half twice, as forward_with_cfg does.
func (s *sampling) modelInput(x []float32) []float32 {
	if !s.cfg {
		return x
	}
	n := s.B * s.per
	return append(append(make([]float32, 0, len(x)), x[:n]...), x[:n]...)
}

// options asks the policy for call k's plan (timed, as it is policy overhead) and sets up the
// forward's options, with the recorder's module hook when recording.
func (s *sampling) options(k, i int, timestep int64) (hook.Options, time.Duration, error) {
	opt := hook.Options{Cache: s.r.Cache}
	tPlan := time.Now()
	if s.r.Policy != nil {
		p, err := s.r.Policy.Plan(k, i)
		if err != nil {
			return opt, 0, fmt.Errorf("sample: plan of call %d: %w", k, err)
		}
		opt.Plan = p
	}
	planTime := time.Since(tPlan)
	rec := s.r.Recorder
	if rec != nil {
		rec.begin(k, i, timestep, planOr(opt.Plan, s.m.Layout()), s.rows)
		opt.Modules = rec.module
	}
	opt.Tokens = s.r.Tokens || rec.needsTokens()
	opt.Choices, opt.DeviceChoice = s.r.Choices, s.r.DeviceChoice
	return opt, planTime, nil
}

// forward runs the model call and times it, leaving out the graphs compiled during the call
// (new shapes on a JIT backend), which are not execution time.
func (s *sampling) forward(in []float32, opt hook.Options, info *StepInfo) ([]float32, error) {
	c0 := compileTime(s.m)
	t0 := time.Now()
	out, err := s.m.Forward(in, s.t, s.labels, opt)
	if err != nil {
		return nil, fmt.Errorf("sample: call %d (t=%g): %w", info.Call, info.Time, err)
	}
	info.Compile = compileTime(s.m) - c0
	info.Forward = time.Since(t0) - info.Compile
	return out, nil
}

// observe lets the policy see the call's results; with the plan's time, this is the policy's
// host overhead.
func (s *sampling) observe(k, i int, plan *hook.Plan, planTime time.Duration, info *StepInfo) error {
	tObs := time.Now()
	if s.r.Policy != nil {
		if err := s.r.Policy.Observe(k, i, plan, s.r.Cache); err != nil {
			return fmt.Errorf("sample: observe call %d: %w", k, err)
		}
	}
	info.Overhead = planTime + time.Since(tObs)
	if s.r.Cache != nil {
		// Measured after the call, when the cache holds what the next call may use (outside the
		// timed intervals: summing shapes costs microseconds).
		info.CacheBytes = s.r.Cache.Bytes()
	}
	return nil
}

// audit, when recording, moves the module hook's time from the forward to the recording, keeps
// the unguided model output and runs the recorder's audit passes; it returns that raw output.
func (s *sampling) audit(k int, in, out []float32, info *StepInfo) ([]float32, error) {
	rec := s.r.Recorder
	if rec == nil {
		return nil, nil
	}
	tr := time.Now()
	// The module hook ran inside Forward; take its time out of the forward.
	info.Record = rec.takeHookTime()
	info.Forward -= info.Record
	raw := append([]float32(nil), out...)
	if err := rec.audited(s.m, in, s.t, s.labels, raw, s.spec); err != nil {
		return nil, fmt.Errorf("sample: record call %d: %w", k, err)
	}
	info.Record += time.Since(tr)
	return raw, nil
}

// update applies guidance to out (in place) and steps the sampler, timed together; it returns
// the step and the noise it drew (nil when none). A PLMS call that does not finish its step
// returns a result without X.
func (s *sampling) update(k, i int, out []float32, info *StepInfo) (diffusion.StepResult, []float32, error) {
	t1 := time.Now()
	if s.cfg {
		if err := diffusion.GuideCFG(out, s.rows, s.spec.OutChannels(), s.spec.Channels, s.guide, s.r.CFGScale); err != nil {
			return diffusion.StepResult{}, nil, fmt.Errorf("sample: %w", err)
		}
	}
	var nz []float32
	if s.r.Sampler.NeedsNoise() && s.r.Noise != nil {
		if err := s.r.Noise(k, s.noise); err != nil {
			return diffusion.StepResult{}, nil, fmt.Errorf("sample: noise of call %d: %w", k, err)
		}
		nz = s.noise
	}
	var res diffusion.StepResult
	var err error
	if s.plms != nil {
		res, err = s.plmsStep(out)
	} else {
		res, err = s.step(k, i, s.x, out, s.rows, nz)
	}
	if err != nil {
		return diffusion.StepResult{}, nil, fmt.Errorf("sample: call %d: %w", k, err)
	}
	info.Update = time.Since(t1)
	return res, nz, nil
}

// plmsStep feeds the guided ε to the PLMS state.
func (s *sampling) plmsStep(out []float32) (diffusion.StepResult, error) {
	eps, err := diffusion.EpsChannels(out, s.rows, s.spec.OutChannels(), s.spec.Channels)
	if err != nil {
		return diffusion.StepResult{}, err
	}
	r, err := s.plms.Step(eps)
	if err != nil || !r.Complete {
		return diffusion.StepResult{}, err
	}
	return r.StepResult, nil
}

// recordTrajectory, when recording, measures the call's feature dynamics against the state
// before the update (s.x) and closes the call with its planned FLOPs, adding to the recording time.
func (s *sampling) recordTrajectory(k, i int, plan *hook.Plan, nz, raw, next []float32, info *StepInfo) error {
	rec := s.r.Recorder
	if rec == nil {
		return nil
	}
	tr := time.Now()
	if err := rec.trajectory(s.m, s.r, k, i, s.t, s.labels, s.guide, nz, s.spec, s.x); err != nil {
		return fmt.Errorf("sample: record call %d: %w", k, err)
	}
	var flops int64
	if fc, ok := s.m.(hook.FLOPsCounter); ok {
		for _, f := range hook.ExecutedFLOPs(fc, planOr(plan, s.m.Layout()), s.rows) {
			flops += f
		}
	}
	rec.endCall(raw, next, flops)
	info.Record += time.Since(tr)
	return nil
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
