package diffusion

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// DPMSolverPP is DPM-Solver++ (multistep, data prediction), the sampler of PixArt-α's inference.
const DPMSolverPP Kind = "dpmpp"

// DefaultDPMOrder is the solver order PixArt-α samples with.
const DefaultDPMOrder = 2

// dpmTrainSteps is the length of the discrete schedule the continuous times interpolate.
const dpmTrainSteps = 1000

// DPMSolver is a DPM-Solver++ configuration on the discrete linear schedule of DiT and PixArt-α
// (time-uniform steps); it holds no sampling state, so one value serves every batch.
//
// Every coefficient is a float32 computed with the float32 operations of the reference (torch
// tensors of the default dtype): the model's fractional timesteps then match it exactly.
type DPMSolver struct {
	steps, order int
	// Indexed by time 0..steps (0 = pure noise): the continuous time and its schedule values.
	tCont, logAlpha, alpha, sigma, lambda []float32
	modelT                                []float32 // the model's timestep at call k (0..steps-1)
}

// NewDPMSolver builds DPM-Solver++ with steps model calls (time-uniform) of the given order (1 or 2).
func NewDPMSolver(steps, order int) (*DPMSolver, error) {
	if order != 1 && order != 2 {
		return nil, fmt.Errorf("DPM-Solver++ order %d: want 1 or 2", order)
	}
	if steps < 1 || steps < order {
		return nil, fmt.Errorf("DPM-Solver++ with %d steps: want at least 1 and at least the order (%d)", steps, order)
	}
	tArray, logAlphaArray := dpmDiscreteSchedule()
	d := &DPMSolver{steps: steps, order: order, tCont: linspace32(1, 1/float32(dpmTrainSteps), steps+1)}
	n := steps + 1
	d.logAlpha, d.alpha, d.sigma, d.lambda = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i, t := range d.tCont {
		la := interpolate32(t, tArray, logAlphaArray)
		e2 := exp32(float32(2 * la)) // exp(2 logα) = α², as the reference (not α·α)
		d.logAlpha[i] = la
		d.alpha[i] = exp32(la)
		d.sigma[i] = float32(math.Sqrt(float64(1 - e2)))
		d.lambda[i] = la - float32(0.5*log32(1-e2))
	}
	d.modelT = make([]float32, steps)
	for k := range d.modelT {
		// In float32 as the reference: call 1 gets 949.04999, not 949.05.
		d.modelT[k] = float32(float32(d.tCont[k]-float32(1.0/dpmTrainSteps)) * dpmTrainSteps)
	}
	return d, nil
}

// ParseDPMSolver builds the default-order solver from a step spec, which must be a plain count
// ("20"): respacing specs ("ddim50", "10,15") belong to DDPM and DDIM.
func ParseDPMSolver(spec string) (*DPMSolver, error) {
	n, err := strconv.Atoi(strings.TrimSpace(spec))
	if err != nil {
		return nil, fmt.Errorf("steps %q: DPM-Solver++ takes a plain step count (respacing specs are for ddpm and ddim)", spec)
	}
	return NewDPMSolver(n, DefaultDPMOrder)
}

// Steps is the number of model calls (and solver updates).
func (d *DPMSolver) Steps() int { return d.steps }

// Order is the solver order.
func (d *DPMSolver) Order() int { return d.order }

// ModelTime is the (fractional) timestep the model receives at call k = 0 … Steps()-1.
func (d *DPMSolver) ModelTime(k int) float32 { return d.modelT[k] }

// TimestepMap is the model timesteps rounded, indexed as Schedule.TimestepMap (respaced index
// steps-1-k for call k), for code that labels calls by an integer timestep.
func (d *DPMSolver) TimestepMap() []int64 {
	m := make([]int64, d.steps)
	for k, t := range d.modelT {
		m[d.steps-1-k] = int64(math.Round(float64(t)))
	}
	return m
}

// NewState starts the solver state of one trajectory (it keeps the earlier data predictions).
func (d *DPMSolver) NewState() *DPMState { return &DPMState{d: d} }

// DPMState is one trajectory's multistep memory: the data predictions of the last two calls.
type DPMState struct {
	d           *DPMSolver
	next        int       // the call Step expects
	prev, prev1 []float32 // x₀ of calls next-1 and next-2
}

// Step takes call k's state x and (guided) ε prediction eps, both [B, C, …], and returns the
// state at the next time with the data prediction x₀ of call k. Calls must come in order 0, 1, ….
func (s *DPMState) Step(k int, x, eps []float32) (StepResult, error) {
	d := s.d
	if k != s.next || k >= d.steps {
		return StepResult{}, fmt.Errorf("DPM-Solver++ step %d: want call %d of %d (calls in order)", k, s.next, d.steps)
	}
	if len(eps) != len(x) || len(x) == 0 {
		return StepResult{}, fmt.Errorf("DPM-Solver++ step %d: ε has %d values, state has %d (want equal, non-zero)", k, len(eps), len(x))
	}
	if s.prev != nil && len(s.prev) != len(x) {
		return StepResult{}, fmt.Errorf("DPM-Solver++ step %d: state has %d values, earlier calls had %d", k, len(x), len(s.prev))
	}
	alpha, sigma := d.alpha[k], d.sigma[k]
	x0 := make([]float32, len(x))
	for j, v := range x {
		x0[j] = float32(v-float32(sigma*eps[j])) / alpha
	}
	// Update u = k+1 moves from time k to k+1; the first is first order (no earlier prediction),
	// and under 10 steps the reference lowers the order of the final updates too.
	u := k + 1
	ord := min(d.order, u)
	if d.steps < 10 {
		ord = min(ord, d.steps+1-u)
	}
	t := k + 1
	h := d.lambda[t] - d.lambda[k]
	phi := expm1_32(-h)
	ratio := d.sigma[t] / d.sigma[k]
	ap := float32(d.alpha[t] * phi)
	next := make([]float32, len(x))
	switch ord {
	case 1:
		for j, v := range x {
			next[j] = float32(ratio*v) - float32(ap*x0[j])
		}
	default:
		hPrev := d.lambda[k] - d.lambda[k-1]
		invR := 1 / float32(hPrev/h)
		half := float32(0.5 * ap)
		for j, v := range x {
			d1 := float32(invR * float32(x0[j]-s.prev[j]))
			next[j] = float32(float32(ratio*v)-float32(ap*x0[j])) - float32(half*d1)
		}
	}
	s.prev = x0
	s.next++
	return StepResult{X: next, PredXStart: x0}, nil
}

// EpsChannels returns the first c (ε) channels of each row of a model output [rows, outC, …],
// dropping learned-variance channels; out itself when outC == c.
func EpsChannels(out []float32, rows, outC, c int) ([]float32, error) {
	if rows <= 0 || c <= 0 || outC < c || len(out)%(rows*outC) != 0 {
		return nil, fmt.Errorf("model output of %d values does not split into %d rows × %d channels (ε: %d)", len(out), rows, outC, c)
	}
	if outC == c {
		return out, nil
	}
	hw := len(out) / (rows * outC)
	eps := make([]float32, 0, rows*c*hw)
	for r := range rows {
		eps = append(eps, out[r*outC*hw:(r*outC+c)*hw]...)
	}
	return eps, nil
}

// dpmDiscreteSchedule is the reference's NoiseScheduleVP('discrete') tables: the times
// linspace(0, 1, 1001)[1:] and log ᾱ^½ = ½·cumsum(log(1−β)), summed in float64, kept as float32.
func dpmDiscreteSchedule() (t, logAlpha []float32) {
	betas := LinearBetas(dpmTrainSteps)
	logAlpha = make([]float32, dpmTrainSteps)
	var sum float64
	for i, b := range betas {
		sum += math.Log(1 - b)
		logAlpha[i] = float32(0.5 * sum)
	}
	return linspace32(0, 1, dpmTrainSteps+1)[1:], logAlpha
}

// linspace32 is torch.linspace in float32 as its CPU kernel computes it (the reference tables
// come from there, and the model's timesteps from them): 8-lane float32 vectors (see
// torchLinspace). The per-value formula differs from this by an ulp on about a quarter of the values.
func linspace32(start, end float32, n int) []float32 { return torchLinspace(start, end, n, 8, fma32) }

// fma32 is a·b + c rounded once to float32. The float64 product is exact; the sum is rounded
// to float64 first, which can only go wrong when it lands on a float32 midpoint, so that case
// is settled by the sum's exact error (TwoSum).
func fma32(a, b, c float32) float32 {
	p, q := float64(a)*float64(b), float64(c)
	s := p + q
	bv := s - p
	e := (p - (s - bv)) + (q - bv)
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if float64(r)+float64(other) != 2*s {
		return r // not a midpoint: the float64 rounding did not move s across one
	}
	if (e > 0) == (other > r) {
		return other
	}
	return r
}

// interpolate32 is the reference's interpolate_fn for one point: piecewise-linear through
// (xp, yp), xp ascending, extended linearly beyond both ends by the outermost segments.
func interpolate32(x float32, xp, yp []float32) float32 {
	n := len(xp)
	j := sort.Search(n, func(i int) bool { return xp[i] >= x })
	lo := j - 1
	switch {
	case j == 0:
		lo = 0
	case j == n:
		lo = n - 2
	}
	x0, x1, y0, y1 := xp[lo], xp[lo+1], yp[lo], yp[lo+1]
	return y0 + float32(float32(x-x0)*float32(y1-y0))/float32(x1-x0)
}

func exp32(x float32) float32    { return float32(math.Exp(float64(x))) }
func expm1_32(x float32) float32 { return float32(math.Expm1(float64(x))) }
func log32(x float32) float32    { return float32(math.Log(float64(x))) }
