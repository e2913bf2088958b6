package methods

import "github.com/cachebench/cachebench/harness/hook"

func init() {
	register(&Info{Name: "none", Doc: "the uncached model: every module computed at every step", Uncached: true, Fits: Any,
		New: func(_ Values, env Env) (Method, error) { return &none{env: env}, nil }})
	register(&Info{Name: "steps", Doc: "fewer sampling steps, nothing cached (a sampler setting, listed as a method because every paper compares against it)",
		Params: []Param{{Name: "steps", Kind: Int, Default: "25", Min: 1, Max: 1000, Doc: "sampling steps to use instead of the run's"}},
		Steps:  func(v Values) int { return v.Int("steps") }, Uncached: true, Fits: Any,
		New: func(_ Values, env Env) (Method, error) { return &none{env: env}, nil }})
	register(&Info{Name: "fora", Doc: "FORA: reuse every block's attention and MLP outputs between full steps every N steps",
		Params: []Param{{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "interval between full steps"}},
		New:    func(v Values, env Env) (Method, error) { return &fora{env: env, n: v.Int("N")}, nil }})
}

// none computes everything.
type none struct {
	env   Env
	notes []Note
}

func (m *none) Plan(_, _ int) (*hook.Plan, error) {
	m.notes = notes(m.env.Layout.Depth, "full")
	return hook.FullPlan(m.env.Layout), nil
}
func (m *none) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }
func (m *none) Notes() []Note                                   { return m.notes }

// fora is FORA's static schedule: full iff s = S−1 or s mod N = 0, otherwise every block reuses
// both cached (pre-gate) outputs; gates, adaLN and the final layer are always recomputed.
type fora struct {
	env   Env
	n     int
	notes []Note
}

func (m *fora) Plan(_, step int) (*hook.Plan, error) {
	if step == m.env.Steps-1 || step%m.n == 0 {
		m.notes = notes(m.env.Layout.Depth, "full")
		return hook.FullPlan(m.env.Layout), nil
	}
	m.notes = notes(m.env.Layout.Depth, "reuse")
	return uniformPlan(m.env.Layout, hook.Reuse), nil
}
func (m *fora) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }
func (m *fora) Notes() []Note                                   { return m.notes }
