package methods

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

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
			l := env.Layout
			m := &taylorSeer{env: env, n: v.Int("N"), order: v.Int("order"), lastFull: -1,
				factors: make([][][]*tensors.Tensor, l.Depth)}
			for b := range m.factors {
				m.factors[b] = make([][]*tensors.Tensor, len(l.Modules))
			}
			return m, nil
		}})
}

// taylorSeer is TaylorSeer on DiT (spec §5.9). Per (block, module) it keeps factors F_0..F_k
// (k ≤ O, one more order per full step): at a full step s with output f and the previous full step
// s', F'_0 = f and F'_{i+1} = (F'_i − F_i)/(s − s'); at another step s it predicts
// f̂ = Σ_i F_i·(s − s_last)^i / i!, which the block uses like a cached output (gates and adaLN
// recomputed). The factors live on the backend that holds the cache; only scalars cross to it.
type taylorSeer struct {
	env      Env
	n, order int
	counter  int  // the official cache_counter: calls since the last full one (after the first two)
	full     bool // whether the last planned call is full
	lastFull int  // step of the last full call (−1 before the first)
	orders   int  // factors each module holds (also tracked in dry runs, which hold no tensors)
	factors  [][][]*tensors.Tensor
	// predicted are the values handed to the model for the current call; they are released once
	// the call ran (Observe) or, at the latest, when the next call is planned.
	predicted []*tensors.Tensor
	notes     []Note
}

func (m *taylorSeer) Plan(_, step int) (*hook.Plan, error) {
	m.release(&m.predicted)
	l := m.env.Layout
	first := step > m.env.Steps-taylorFirstFull-1
	m.full = first || m.counter == m.n-1
	if m.full {
		m.counter = 0
		m.notes = notes(l.Depth, "full")
		return hook.FullPlan(l), nil
	}
	m.counter++
	if m.lastFull < 0 {
		return nil, fmt.Errorf("taylorseer: step %d predicts before any full step", step)
	}
	p := hook.FullPlan(l)
	x := step - m.lastFull
	for b := range p.Blocks {
		for i := range p.Blocks[b].Modules {
			var v *tensors.Tensor
			if m.env.Backend != nil { // without a backend this is a dry run: plans are never executed
				var err error
				if v, err = m.predict(b, i, x); err != nil {
					return nil, fmt.Errorf("taylorseer: step %d block %d %s: %w", step, b, l.Modules[i], err)
				}
				m.predicted = append(m.predicted, v)
			}
			p.Blocks[b].Modules[i] = hook.ModulePlan{Action: hook.Predict, Value: v}
		}
	}
	m.notes = notes(l.Depth, "Taylor")
	return p, nil
}

// predict evaluates the Taylor polynomial of one module at distance x from the last full step,
// term by term as the official code does: ((1/i!)·F_i)·x^i, summed in order, in float32.
func (m *taylorSeer) predict(b, i, x int) (*tensors.Tensor, error) {
	fs := m.factors[b][i]
	if len(fs) == 0 {
		return nil, errors.New("no Taylor factors (the full steps were observed without a cache)")
	}
	inv, pow := make([]float32, len(fs)), make([]float32, len(fs))
	for k := range fs {
		inv[k] = float32(1 / float64(factorial(k)))
		pow[k] = float32(math.Pow(float64(x), float64(k)))
	}
	args := []any{inv, pow}
	for _, f := range fs {
		args = append(args, f)
	}
	out, err := taylorExec(m.env.Backend, "predict").Exec(args...)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func factorial(k int) int {
	f := 1
	for i := 2; i <= k; i++ {
		f *= i
	}
	return f
}

func (m *taylorSeer) Observe(_, step int, _ *hook.Plan, c *hook.Cache) error {
	if !m.full {
		m.release(&m.predicted)
		return m.endOfRun(step)
	}
	prev := m.lastFull
	m.lastFull = step
	// The very first full step has nothing to difference against: it only stores F_0.
	orders := 1
	if prev >= 0 {
		orders = 1 + min(m.orders, m.order)
	}
	defer func() { m.orders = orders }()
	if c == nil {
		return nil // dry run: only the bookkeeping above
	}
	if m.env.Backend == nil {
		return errors.New("taylorseer: the run gives no backend for the Taylor arithmetic (methods.Env.Backend)")
	}
	d := float32(step - prev)
	for b := range m.factors {
		for i := range m.factors[b] {
			f := c.Out(b, i)
			if f == nil {
				return fmt.Errorf("taylorseer: step %d block %d %s: the full step left no output in the cache", step, b, m.env.Layout.Modules[i])
			}
			old := m.factors[b][i]
			if len(old) < orders-1 {
				return fmt.Errorf("taylorseer: step %d block %d %s: %d Taylor factors kept, %d expected (an earlier full step was observed without a cache)",
					step, b, m.env.Layout.Modules[i], len(old), orders-1)
			}
			args := []any{d, f}
			for _, t := range old[:orders-1] {
				args = append(args, t)
			}
			out, err := taylorExec(m.env.Backend, "update").Exec(args...)
			if err != nil {
				return fmt.Errorf("taylorseer: step %d block %d %s: %w", step, b, m.env.Layout.Modules[i], err)
			}
			m.release(&old)
			m.factors[b][i] = out
		}
	}
	return m.endOfRun(step)
}

// endOfRun releases every factor after the last step (step 0): nothing predicts from them any more.
func (m *taylorSeer) endOfRun(step int) error {
	if step != 0 {
		return nil
	}
	for b := range m.factors {
		for i := range m.factors[b] {
			m.release(&m.factors[b][i])
		}
	}
	return nil
}

// release frees on-device tensors the method owns and empties the list.
func (m *taylorSeer) release(ts *[]*tensors.Tensor) {
	for _, t := range *ts {
		if t != nil {
			_ = t.FinalizeAll()
		}
	}
	*ts = nil
}

func (m *taylorSeer) Notes() []Note { return m.notes }

// taylorExecs holds the compiled Taylor graphs per backend, shared by every method instance (one
// per batch), so that each shape and factor count compiles once per process.
var taylorExecs = struct {
	sync.Mutex
	m map[taylorExecKey]*graph.Exec
}{m: map[taylorExecKey]*graph.Exec{}}

type taylorExecKey struct {
	backend backends.Backend
	kind    string
}

// taylorExec returns the graph family of one kind:
//
//	update:  (d, f, F_0..F_{k−1}) → (f, (f − F_0)/d, ((f − F_0)/d − F_1)/d, …)   k+1 factors
//	predict: (1/i! [k], x^i [k], F_0..F_{k−1}) → Σ_i ((1/i!)·F_i)·x^i
func taylorExec(b backends.Backend, kind string) *graph.Exec {
	taylorExecs.Lock()
	defer taylorExecs.Unlock()
	key := taylorExecKey{b, kind}
	if e, ok := taylorExecs.m[key]; ok {
		return e
	}
	var fn func([]*graph.Node) []*graph.Node
	if kind == "update" {
		fn = func(in []*graph.Node) []*graph.Node {
			d, cur := in[0], in[1]
			out := []*graph.Node{cur} // a fresh buffer: the cache releases f at the next full step
			for _, old := range in[2:] {
				cur = graph.Div(graph.Sub(cur, old), d)
				out = append(out, cur)
			}
			return out
		}
	} else {
		fn = func(in []*graph.Node) []*graph.Node {
			inv, pow, fs := in[0], in[1], in[2:]
			var sum *graph.Node
			for k, f := range fs {
				term := graph.Mul(graph.Mul(f, graph.Reshape(graph.Slice(inv, graph.AxisElem(k)))), graph.Reshape(graph.Slice(pow, graph.AxisElem(k))))
				if sum == nil {
					sum = term
				} else {
					sum = graph.Add(sum, term)
				}
			}
			return []*graph.Node{sum}
		}
	}
	e := graph.MustNewExec(b, fn).WithName("methods/taylorseer/" + kind)
	e.SetMaxCache(-1) // shapes vary only with the batch and the number of factors (≤ order+1)
	taylorExecs.m[key] = e
	return e
}
