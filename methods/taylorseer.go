package methods

import (
	"fmt"
	"math"

	"github.com/cachebench/cachebench/harness/hook"
)

// taylorFirstFull is TaylorSeer's first_enhance: the first two steps are always full.
const taylorFirstFull = 2

func init() {
	register(&Info{Name: "taylorseer", Doc: "TaylorSeer (Liu, Zou et al., ICCV 2025): full steps at the first 2 steps and then every N-th; " +
		"in between every block's attention and MLP outputs are extrapolated by a Taylor series in the step index whose " +
		"derivatives are finite differences of the outputs at the last full steps (DiT code semantics). No quirk of the " +
		"official code changes its decisions, so there is no clean mode; note that its differences are not divided-difference " +
		"(Newton) coefficients, so only outputs linear in the step are extrapolated exactly",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "4", Min: 1, Max: 1000, Doc: "interval between full steps after the first two (the official counter: full when it reaches N−1)"},
			{Name: "order", Kind: Int, Default: "4", Min: 0, Max: 8, Doc: "highest Taylor order O kept per module (0 reuses the last full output, like FORA)"},
		},
		New: func(v Values, env Env) (Method, error) {
			return &taylorSeer{env: env, n: v.Int("N"), order: v.Int("order"), lastFull: -1}, nil
		}})
}

// taylorSeer is TaylorSeer on DiT (the official TaylorSeer-DiT code). Per (block, module) the executor keeps factors
// F_0..F_k (k ≤ O, one more order per full step) in the cache: at a full step s with output f and
// the previous full step s', F'_0 = f and F'_{i+1} = (F'_i − F_i)/(s − s'); at another step s the
// block uses f̂ = Σ_i F_i·(s − s_last)^i / i! like a cached output (gates and adaLN recomputed).
// The method holds no tensor: it plans the history updates and the series' coefficients.
type taylorSeer struct {
	env      Env
	n, order int
	counter  int // the official cache_counter: calls since the last full one (after the first two)
	lastFull int // step of the last full call (−1 before the first)
	orders   int // factors each module holds after the last full step
	notes    []Note
}

func (m *taylorSeer) Plan(_, step int) (*hook.Plan, error) {
	l := m.env.Layout
	first := step > m.env.Steps-taylorFirstFull-1
	if first || m.counter == m.n-1 {
		m.counter = 0
		// The very first full step has nothing to difference against: it only stores F_0.
		h := &hook.History{Step: 1, Orders: 1}
		if m.lastFull >= 0 {
			h = &hook.History{Step: float32(step - m.lastFull), Orders: 1 + min(m.orders, m.order)}
		}
		m.lastFull, m.orders = step, h.Orders
		p := hook.FullPlan(l)
		for b := range p.Blocks {
			for i := range p.Blocks[b].Modules {
				p.Blocks[b].Modules[i].History = h
			}
		}
		m.notes = notes(l.Depth, "full")
		return p, nil
	}
	m.counter++
	if m.lastFull < 0 {
		return nil, fmt.Errorf("taylorseer: step %d predicts before any full step", step)
	}
	// Term by term as the official code: ((1/i!)·F_i)·x^i, summed in order, in float32.
	x := step - m.lastFull
	s := &hook.Series{Scale: make([]float32, m.orders), Power: make([]float32, m.orders)}
	for k := range m.orders {
		s.Scale[k] = float32(1 / float64(factorial(k)))
		s.Power[k] = float32(math.Pow(float64(x), float64(k)))
	}
	p := hook.FullPlan(l)
	for b := range p.Blocks {
		for i := range p.Blocks[b].Modules {
			p.Blocks[b].Modules[i] = hook.ModulePlan{Action: hook.Predict, Series: s}
		}
	}
	m.notes = notes(l.Depth, "Taylor")
	return p, nil
}

func factorial(k int) int {
	f := 1
	for i := 2; i <= k; i++ {
		f *= i
	}
	return f
}

// Observe has nothing to do: the factors live in the cache, on the device.
func (m *taylorSeer) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *taylorSeer) Notes() []Note { return m.notes }
