package methods

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "teacache", DataDependent: true,
		Doc: "TeaCache (Liu et al., CVPR 2025, arXiv 2411.19108; ali-vilab/TeaCache 7c10efc, TeaCache4FLUX/teacache_flux.py): the whole block stack " +
			"is skipped, its residual from the last call that ran it added to the new input, while the accumulated rescaled relative L1 " +
			"change of block 0's modulated input (vs the previous call) stays below thresh; the first and last calls run, and a call that " +
			"runs resets the accumulator. Rescale: the calibration's polynomial (rescale=auto with a calibration, or calibrated); " +
			"without a calibration, auto uses the identity (coefficients [1, 0]: raw relative L1, so thresholds are not the reference's)",
		Params: []Param{
			{Name: "thresh", Kind: Float, Default: "0.1", Min: 0, Max: 1000,
				Doc: "rel_l1_thresh: skip while the accumulated rescaled distance stays below it (0.1 and 0.2 are the paper's slow and fast settings)"},
			{Name: "rescale", Kind: Enum, Default: "auto", Choices: []string{"auto", "calibrated", "identity"},
				Doc: "auto: the calibration's polynomial if the run has one, else the identity; calibrated: refuse to run without one; identity: raw relative L1"},
			decideParam,
		},
		New: func(v Values, env Env) (Method, error) {
			poly := []float64{1, 0}
			switch v.String("rescale") {
			case "calibrated", "auto":
				c := env.Calibration
				if c != nil && len(c.TeaCache) > 0 {
					poly = c.TeaCache
				} else if v.String("rescale") == "calibrated" {
					return nil, fmt.Errorf("rescale=calibrated needs TeaCache's rescale polynomial from a calibration file, and the run has none: run `runbench calibrate` and pass its file")
				}
			}
			m := &teaCache{gated: newGated(env, hook.Span{From: 0, To: env.Layout.Depth - 1}, hook.StatModulatedInput, v.String("decide")),
				thresh: v.Float("thresh"), poly: poly}
			m.acc = make([]float64, m.units())
			m.pending = make([]float64, m.units())
			return m, nil
		}})
}

// teaCache is TeaCache on the hook surface (docs/methods.md): one gate over the whole stack with
// the modulated-input statistic, an accumulator per decision unit.
type teaCache struct {
	gated
	thresh  float64
	poly    []float64 // highest degree first
	acc     []float64 // accumulated rescaled distance since the unit last ran the stack
	pending []float64 // acc after this call, should the unit skip
}

// rescale evaluates the polynomial (numpy.poly1d: Horner's rule from the highest degree).
func (m *teaCache) rescale(x float64) float64 {
	var y float64
	for _, c := range m.poly {
		y = y*x + c
	}
	return y
}

func (m *teaCache) Plan(call, _ int) (*hook.Plan, error) {
	// The reference computes at cnt == 0 and cnt == num_steps−1 whatever the distance, and its
	// accumulator restarts there.
	forced := call == 0 || call == m.env.Steps-1
	return m.plan(func(stat []float64) []bool {
		skip := make([]bool, len(stat))
		for u, d := range stat {
			m.pending[u] = 0
			// +Inf: no reference yet; a non-finite rescale could otherwise turn into a skip.
			if forced || !finite(d) {
				continue
			}
			a := m.acc[u] + m.rescale(d)
			m.pending[u] = a
			skip[u] = finite(a) && a < m.thresh
		}
		return skip
	}), nil
}

// Observe commits the accumulator: what the unit accumulated if it skipped, zero if it ran.
func (m *teaCache) Observe(_, _ int, p *hook.Plan, _ *hook.Cache) error {
	skipped, err := m.outcome(p)
	if err != nil {
		return fmt.Errorf("teacache: %w", err)
	}
	for u, s := range skipped {
		m.acc[u] = 0
		if s {
			m.acc[u] = m.pending[u]
		}
	}
	return nil
}
