package diffusion

import (
	"fmt"
	"math"
)

// PLMS is the pseudo linear multistep sampler of latent diffusion (Stable Diffusion v1's
// txt2img default): η = 0, DDIM-style updates driven by an Adams–Bashforth combination of the
// model's ε history, on the LDM schedule (not DiT's).
const PLMS Kind = "plms"

// The LDM "linear" schedule of Stable Diffusion v1 (linear in √β).
const (
	LDMTrainSteps  = 1000
	LDMLinearStart = 0.00085
	LDMLinearEnd   = 0.012
)

// LDMSchedule is ldm's register_schedule for the "linear" beta schedule: built in float64, then
// registered as float32 buffers, which is what every sampler of the reference reads.
type LDMSchedule struct {
	Betas, AlphasCumprod []float64 // float64, as numpy built them

	Betas32, AlphasCumprod32, AlphasCumprodPrev32 []float32 // the registered buffers
}

// NewLDMSchedule builds betas = linspace(√start, √end, T)² and ᾱ = cumprod(1 − β) in float64
// (torch's float64 linspace, then numpy's sequential product), and casts them to float32.
func NewLDMSchedule(T int, start, end float64) (*LDMSchedule, error) {
	if T < 2 || !(start > 0) || !(end > start) || end >= 1 {
		return nil, fmt.Errorf("LDM schedule: %d steps from β %g to %g; want ≥ 2 steps and 0 < start < end < 1", T, start, end)
	}
	s := &LDMSchedule{Betas: linspace64(math.Sqrt(start), math.Sqrt(end), T)}
	for i, b := range s.Betas {
		s.Betas[i] = b * b
	}
	s.AlphasCumprod = cumprod(oneMinus(s.Betas))
	s.Betas32, s.AlphasCumprod32 = to32(s.Betas), to32(s.AlphasCumprod)
	s.AlphasCumprodPrev32 = append([]float32{1}, s.AlphasCumprod32[:T-1]...)
	return s, nil
}

// SDSchedule is Stable Diffusion v1's training schedule (1000 steps, β from 0.00085 to 0.012).
func SDSchedule() *LDMSchedule {
	s, err := NewLDMSchedule(LDMTrainSteps, LDMLinearStart, LDMLinearEnd)
	if err != nil { // the constants are valid
		panic(err)
	}
	return s
}

func to32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// linspace64 is torch.linspace in float64 as its CPU kernel computes it: 4-lane float64 vectors
// (see torchLinspace). The golden float64 betas agree bit for bit; per-value formulas miss
// 200–330 of the 1000 by an ulp, which the float32 cast happens to hide for SD's constants.
func linspace64(start, end float64, n int) []float64 {
	return torchLinspace(start, end, n, 4, math.FMA)
}

// PLMSSampler is a PLMS configuration (η = 0, "uniform" timesteps); it holds no sampling state.
//
// Coefficients are float32, taken from the float32 ᾱ as the reference's buffers hold them, and
// every update runs in float32 with each operation rounded, as the reference's tensor code.
type PLMSSampler struct {
	// ddim makes every step one model call with ε′ = ε (ldm's DDIMSampler at η = 0, which shares
	// PLMS's timesteps, coefficients and update).
	ddim                   bool
	timesteps              []int64   // ascending: range(0, T, T/steps) + 1
	alphas, alphasPrev     []float32 // ᾱ at each timestep and at the one before (ᾱ₀ before the first)
	sqrtOneMinus, sqrtA    []float32 // √(1 − ᾱ_t), √ᾱ_t
	sqrtAPrev, sqrtOneAPrv []float32 // √ᾱ_prev, √(1 − ᾱ_prev)
}

// NewPLMS builds PLMS with about steps steps on Stable Diffusion v1's schedule.
func NewPLMS(steps int) (*PLMSSampler, error) { return NewPLMSWith(SDSchedule(), steps) }

// NewLDMDDIM builds ldm's DDIM (η = 0, "uniform" timesteps) on Stable Diffusion v1's schedule, as
// the PLMS machine with one call per step and no multistep ε.
func NewLDMDDIM(steps int) (*PLMSSampler, error) {
	p, err := NewPLMSWith(SDSchedule(), steps)
	if err != nil {
		return nil, fmt.Errorf("DDIM: %w", err)
	}
	p.ddim = true
	return p, nil
}

// DDIM reports whether the machine runs ldm's DDIM rather than PLMS.
func (p *PLMSSampler) DDIM() bool { return p.ddim }

// NewPLMSWith builds PLMS over a schedule. As the reference, the timesteps are
// range(0, T, T div steps) + 1, so a step count that does not divide T gives one step more.
func NewPLMSWith(s *LDMSchedule, steps int) (*PLMSSampler, error) {
	T := len(s.AlphasCumprod32)
	if steps < 1 || steps > T {
		return nil, fmt.Errorf("PLMS with %d steps: want 1 … %d", steps, T)
	}
	c := T / steps
	p := &PLMSSampler{}
	for t := 0; t < T; t += c {
		p.timesteps = append(p.timesteps, int64(t+1))
	}
	if last := p.timesteps[len(p.timesteps)-1]; last >= int64(T) {
		// T div steps divides T−1 (3, 9, 27, 37 or over T/2 steps of 1000): the reference
		// indexes past its schedule there and fails too.
		return nil, fmt.Errorf("PLMS with %d steps: the last timestep would be %d, past the schedule's %d steps (the reference fails too); choose another step count", steps, last, T)
	}
	sqrt32 := func(v float32) float32 { return float32(math.Sqrt(float64(v))) }
	for i, t := range p.timesteps {
		a := s.AlphasCumprod32[t]
		ap := s.AlphasCumprod32[0]
		if i > 0 {
			ap = s.AlphasCumprod32[p.timesteps[i-1]]
		}
		p.alphas = append(p.alphas, a)
		p.alphasPrev = append(p.alphasPrev, ap)
		p.sqrtOneMinus = append(p.sqrtOneMinus, sqrt32(1-a))
		p.sqrtA = append(p.sqrtA, sqrt32(a))
		p.sqrtAPrev = append(p.sqrtAPrev, sqrt32(ap))
		p.sqrtOneAPrv = append(p.sqrtOneAPrv, sqrt32(1-ap)) // σ = 0: √(1 − ᾱ_prev − σ²)
	}
	return p, nil
}

// Steps is the number of sampler steps (Calls() − 1 model calls: the first step makes two).
func (p *PLMSSampler) Steps() int { return len(p.timesteps) }

// Calls is the number of model calls of one trajectory.
func (p *PLMSSampler) Calls() int {
	if p.ddim {
		return len(p.timesteps)
	}
	return len(p.timesteps) + 1
}

// DDIMTimesteps are the model timesteps in ascending order (the reference's ddim_timesteps).
func (p *PLMSSampler) DDIMTimesteps() []int64 { return append([]int64(nil), p.timesteps...) }

// Alphas and AlphasPrev are ᾱ at each of DDIMTimesteps and at the timestep before it (ᾱ₀ for
// the first), in ascending order (the reference's ddim_alphas, ddim_alphas_prev).
func (p *PLMSSampler) Alphas() []float32 { return append([]float32(nil), p.alphas...) }

// AlphasPrev: see Alphas.
func (p *PLMSSampler) AlphasPrev() []float32 { return append([]float32(nil), p.alphasPrev...) }

// Timestep is the model timestep of step i = 0 … Steps()−1 (descending: step 0 is the noisiest).
func (p *PLMSSampler) Timestep(i int) int64 { return p.timesteps[p.index(i)] }

// index is the ascending schedule index of step i.
func (p *PLMSSampler) index(i int) int { return len(p.timesteps) - 1 - i }

// Update is the η = 0 update of step i from state x with the combined ε′ (the reference's
// get_x_prev_and_pred_x0): x₀ = (x − √(1−ᾱ_t)·ε′)/√ᾱ_t, x_prev = √ᾱ_prev·x₀ + √(1−ᾱ_prev)·ε′.
func (p *PLMSSampler) Update(i int, x, eps []float32) (StepResult, error) {
	if i < 0 || i >= p.Steps() {
		return StepResult{}, fmt.Errorf("PLMS step %d outside [0, %d)", i, p.Steps())
	}
	if len(eps) != len(x) || len(x) == 0 {
		return StepResult{}, fmt.Errorf("PLMS step %d: ε has %d values, state has %d (want equal, non-zero)", i, len(eps), len(x))
	}
	j := p.index(i)
	s1a, sa, sap, s1ap := p.sqrtOneMinus[j], p.sqrtA[j], p.sqrtAPrev[j], p.sqrtOneAPrv[j]
	res := StepResult{X: make([]float32, len(x)), PredXStart: make([]float32, len(x))}
	for k, v := range x {
		e := eps[k]
		x0 := float32(v-float32(s1a*e)) / sa
		res.PredXStart[k] = x0
		res.X[k] = float32(sap*x0) + float32(s1ap*e)
	}
	return res, nil
}

// CombineEps is PLMS's ε′ for a step after the first: e the step's model output, old the ε of
// the earlier steps, most recent last (only the last three count). One earlier ε gives
// (3e − e₋₁)/2, two (23e − 16e₋₁ + 5e₋₂)/12, three or more (55e − 59e₋₁ + 37e₋₂ − 9e₋₃)/24,
// each evaluated left to right in float32.
func CombineEps(e []float32, old [][]float32) ([]float32, error) {
	if len(old) == 0 {
		return nil, fmt.Errorf("PLMS: combining ε needs at least one earlier ε (the first step takes a second model call instead)")
	}
	for k, o := range old {
		if len(o) != len(e) {
			return nil, fmt.Errorf("PLMS: earlier ε %d has %d values, the current %d", k, len(o), len(e))
		}
	}
	n := len(old)
	out := make([]float32, len(e))
	for k, v := range e {
		switch {
		case n == 1:
			out[k] = float32(float32(3*v)-old[n-1][k]) / 2
		case n == 2:
			out[k] = float32(float32(float32(23*v)-float32(16*old[n-1][k]))+float32(5*old[n-2][k])) / 12
		default:
			a := float32(float32(55*v) - float32(59*old[n-1][k]))
			a = float32(a + float32(37*old[n-2][k]))
			out[k] = float32(a-float32(9*old[n-3][k])) / 24
		}
	}
	return out, nil
}

// PLMSCall is a model evaluation a trajectory asks for.
type PLMSCall struct {
	Call      int       // 0 … Calls()−1
	Step      int       // the step it belongs to (calls 0 and 1 both belong to step 0)
	T         int64     // the model timestep
	X         []float32 // the state to evaluate (owned by the trajectory: do not modify)
	Corrector bool      // the first step's second call, at the next step's timestep
}

// PLMSResult is what one model output fed to a trajectory produced.
type PLMSResult struct {
	// StepResult after a complete step: the new state and the step's x₀ prediction. After the
	// first call of step 0: the predictor's state (the corrector call's input) and x₀.
	StepResult
	Complete bool // false: the step needs another model call (see PLMSState.Next)
}

// NewState starts a trajectory from x_T (copied).
func (p *PLMSSampler) NewState(xT []float32) *PLMSState {
	return &PLMSState{p: p, x: append([]float32(nil), xT...)}
}

// PLMSState is one trajectory: its state, the ε of its earlier steps and, within the first step,
// the predictor. Use Next to learn which model call comes next, and Step to feed its output.
type PLMSState struct {
	p       *PLMSSampler
	x       []float32   // state at the start of the current step
	step    int         // current step
	call    int         // model calls fed so far
	old     [][]float32 // ε of earlier steps, most recent last (≤ 3)
	first   []float32   // step 0's ε while its corrector call is pending
	predict []float32   // step 0's predictor state, the corrector's input
}

// Done reports that every step was taken.
func (s *PLMSState) Done() bool { return s.step >= s.p.Steps() }

// X is the current state (after the last complete step; x_T before the first); do not modify it.
func (s *PLMSState) X() []float32 { return s.x }

// Next describes the model call the trajectory needs; ok is false once it is done.
func (s *PLMSState) Next() (c PLMSCall, ok bool) {
	if s.Done() {
		return PLMSCall{}, false
	}
	if s.first != nil {
		// The corrector runs at the next step's time; with a single step the reference clamps to
		// the last timestep, so it runs at the same time.
		next := min(s.step+1, s.p.Steps()-1)
		return PLMSCall{Call: s.call, Step: s.step, T: s.p.Timestep(next), X: s.predict, Corrector: true}, true
	}
	return PLMSCall{Call: s.call, Step: s.step, T: s.p.Timestep(s.step), X: s.x}, true
}

// Step feeds the (guided) ε of the call Next describes, [B, C, …] like the state.
func (s *PLMSState) Step(eps []float32) (PLMSResult, error) {
	if s.Done() {
		return PLMSResult{}, fmt.Errorf("PLMS: ε fed after the last of %d steps", s.p.Steps())
	}
	if len(eps) != len(s.x) {
		return PLMSResult{}, fmt.Errorf("PLMS call %d: ε has %d values, the state %d", s.call, len(eps), len(s.x))
	}
	var e []float32
	switch {
	case s.p.ddim:
		e = eps
	case s.first != nil: // corrector: ε′ = (ε_t + ε_next)/2, from the step's own state
		e = make([]float32, len(eps))
		for k, v := range eps {
			e[k] = float32(s.first[k]+v) / 2
		}
	case len(s.old) == 0: // predictor: a DDIM step with ε_t, to evaluate the model there
		pred, err := s.p.Update(s.step, s.x, eps)
		if err != nil {
			return PLMSResult{}, err
		}
		s.first, s.predict = append([]float32(nil), eps...), pred.X
		s.call++
		return PLMSResult{StepResult: pred}, nil
	default:
		var err error
		if e, err = CombineEps(eps, s.old); err != nil {
			return PLMSResult{}, err
		}
	}
	res, err := s.p.Update(s.step, s.x, e)
	if err != nil {
		return PLMSResult{}, err
	}
	// The history keeps each step's ε_t: never ε′ nor the corrector's output.
	et := eps
	if s.first != nil {
		et = s.first
	} else {
		et = append([]float32(nil), et...)
	}
	s.old = append(s.old, et)
	if len(s.old) > 3 {
		s.old = s.old[1:]
	}
	s.first, s.predict = nil, nil
	s.x = res.X
	s.step++
	s.call++
	return PLMSResult{StepResult: res, Complete: true}, nil
}
