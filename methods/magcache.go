package methods

import (
	"fmt"
	"math"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "magcache",
		Doc: "MagCache (Ma et al., NeurIPS 2025, arXiv 2506.09045; Zehong-Ma/MagCache df81cb1, MagCache4Wan2.1/magcache_generate.py): " +
			"the whole block stack is skipped, its residual from the last call that ran it added, while the accumulated error " +
			"Σ|1 − Π ratios| of the calibrated magnitude ratios since that call stays below thresh and at most K calls in a row skip; " +
			"the first ⌊retention_ratio·S⌋ calls (and call 0) run. The ratios depend on the step only, so the schedule is fixed " +
			"before the run. Needs a calibration (runbench calibrate)",
		Params: []Param{
			{Name: "thresh", Kind: Float, Default: "0.12", Min: 0, Max: 1000, Doc: "magcache_thresh: skip while the accumulated error stays below it"},
			{Name: "K", Kind: Int, Default: "2", Min: 1, Max: 100000, Doc: "magcache_K: at most K consecutive skipped calls"},
			{Name: "retention_ratio", Kind: Float, Default: "0.2", Min: 0, Max: 1, Doc: "the first ⌊retention_ratio·S⌋ calls always run"},
		},
		New: func(v Values, env Env) (Method, error) {
			c := env.Calibration
			if c == nil || len(c.MagRatios) == 0 {
				return nil, fmt.Errorf("magcache needs the model's magnitude ratios, and the run has no calibration with them: run `runbench calibrate` for this model, sampler, steps and CFG and pass its file")
			}
			if len(c.MagRatios) != env.Steps {
				return nil, fmt.Errorf("the calibration has %d magnitude ratios and the run makes %d calls: run `runbench calibrate` for this step count", len(c.MagRatios), env.Steps)
			}
			skip := magSchedule(c.MagRatios, v.Float("thresh"), v.Int("K"), int(float64(env.Steps)*v.Float("retention_ratio")))
			return &magCache{env: env, skip: skip}, nil
		}})
}

// magSchedule decides every call from the ratios alone, as the reference does call by call: past
// the retained calls, a call multiplies its ratio into the accumulated ratio, adds |1 − that
// product| to the accumulated error and skips while error < thresh and the run of skips is ≤ K;
// a call that runs resets all three. Call 0 always runs (nothing is cached before it; the reference
// would reuse a residual it does not have if retain were 0).
func magSchedule(ratios []float64, thresh float64, k, retain int) []bool {
	skip := make([]bool, len(ratios))
	ratio, errSum, steps := 1.0, 0.0, 0
	for call, r := range ratios {
		if call == 0 || call < retain {
			continue
		}
		ratio *= r
		steps++
		errSum += math.Abs(1 - ratio)
		if errSum < thresh && steps <= k {
			skip[call] = true
			continue
		}
		ratio, errSum, steps = 1, 0, 0
	}
	return skip
}

// magCache is MagCache on the hook surface (docs/methods.md): a static schedule of whole-stack
// residual skips; calls that run keep the stack's input and output for the next skip.
type magCache struct {
	env   Env
	skip  []bool // per call
	notes []Note
}

func (m *magCache) Plan(call, _ int) (*hook.Plan, error) {
	if call < 0 || call >= len(m.skip) {
		return nil, fmt.Errorf("magcache: call %d of a %d-call schedule", call, len(m.skip))
	}
	l := m.env.Layout
	whole := hook.Span{From: 0, To: l.Depth - 1}
	p := hook.FullPlan(l)
	p.RangesOnly = true
	if m.skip[call] {
		p.Skip(hook.SpanSkip{Span: whole, Mode: hook.SkipResidual})
		m.notes = notes(l.Depth, "skip")
		return p, nil
	}
	p.Keep = []hook.Span{whole}
	m.notes = notes(l.Depth, "full")
	return p, nil
}

func (m *magCache) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *magCache) Notes() []Note { return m.notes }
