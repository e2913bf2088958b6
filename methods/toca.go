package methods

import (
	"fmt"
	"math"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "toca", Doc: "ToCa (Zou et al., ICLR 2025): token-wise MLP caching between full steps, DiT code semantics",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "fresh threshold: nominal interval between full steps, also the staleness normaliser"},
			{Name: "ratio", Kind: Float, Default: "0.07", Min: 0, Max: 1, Doc: "fresh ratio r0: fraction of tokens recomputed at a partial step before the schedules"},
			{Name: "scheduler", Kind: Enum, Default: "ToCa-ddim50", Choices: []string{"ToCa-ddim50", "ToCa-ddpm250", "constant"}, Doc: "ratio schedule over steps and layers (constant: r = r0 everywhere; not in the official code)"},
			{Name: "soft_fresh_weight", Kind: Float, Default: "0.25", Min: 0, Max: 100, Doc: "λ3, weight of the staleness score s3"},
			{Name: "score", Kind: Enum, Default: "attention", Choices: []string{"attention", "random", "similarity", "norm"},
				Doc: "base score: s1 attention received (paper), uniform random, 1 − cos(MLP input, cached MLP output), or ‖MLP input‖ (the last two chosen inside the forward)"},
			{Name: "mode", Kind: Enum, Default: "faithful", Choices: []string{"faithful", "clean"}, Doc: "faithful keeps the official mid-step interval update (layers after a full layer 0 re-test with the new interval); clean decides full steps once per step"},
		},
		New: func(v Values, env Env) (Method, error) {
			if err := ditLayout(env.Layout); err != nil {
				return nil, err
			}
			sched, err := tocaSchedule(v.String("scheduler"))
			if err != nil {
				return nil, err
			}
			e, err := newTokenEngine(env, v.Int("N"), v.Float("soft_fresh_weight"), 0.6, 2, v.String("score"))
			if err != nil {
				return nil, err
			}
			return &toca{env: env, r0: v.Float("ratio"), sched: sched, engine: e,
				cycle: cycle{n: v.Int("N"), r0: v.Float("ratio"), steps: env.Steps, clean: v.String("mode") == "clean", t: float64(v.Int("N"))}}, nil
		}})
}

// ratioSchedule holds the step and layer weights of the official fresh-ratio scheduler.
type ratioSchedule struct {
	ws, wl   float64
	constant bool
}

func tocaSchedule(name string) (ratioSchedule, error) {
	switch name {
	case "ToCa-ddim50":
		return ratioSchedule{ws: 2.0, wl: -0.2}, nil
	case "ToCa-ddpm250":
		return ratioSchedule{ws: 0.4, wl: 0.8}, nil
	case "constant":
		return ratioSchedule{constant: true}, nil
	}
	return ratioSchedule{}, fmt.Errorf("unknown ratio scheduler %q", name)
}

// ratio is r = r0 · F_layer · F_step · F_type, multiplied left to right in float64 with each
// factor written as the official code writes it. The official code divides the layer index by
// the literal 27 (depth − 1 of the XL models); depth − 1 is used here, which is the same for XL.
func (r ratioSchedule) ratio(r0 float64, layer, depth, step, steps int, fType float64) float64 {
	if r.constant {
		return r0
	}
	fLayer := 1.0
	if depth > 1 {
		fLayer = (1 + r.wl) - ((2*r.wl)*float64(layer))/float64(depth-1)
	}
	fStep := (1 + r.ws) - ((2*r.ws)*float64(step))/float64(steps)
	return r0 * fLayer * fStep * fType
}

// Module factors of the ratio schedules, as float64 arithmetic on the official literals:
// DiT's MLP 1 + 0.6·2.5; PixArt's cross-attention 1 − (1 − 0.6)·1.0 and MLP 1 + 0.6·1.0.
var (
	moduleTimeWeight = 0.6
	ditMLP           = 1 + moduleTimeWeight*2.5
	pixartCross      = 1 - (1-moduleTimeWeight)*1.0
	pixartMLP        = 1 + moduleTimeWeight*1.0
)

// freshCount is k = int(float32(clamp(r, 0, 1)) · n), computed in float32 and truncated.
func freshCount(r float64, n int) (int, float32) {
	rf := float32(min(max(r, 0), 1))
	return int(float32(rf * float32(n))), rf
}

// toca is ToCa on DiT: attention is never partial (its ratio factor is 0), so a partial step
// reuses every block's attention and recomputes the MLP for k selected tokens per row.
type toca struct {
	env    Env
	r0     float64
	sched  ratioSchedule
	engine *tokenEngine
	cycle  cycle
	notes  []Note
	// force, when set (tests), replaces the method's own token choice (teacher forcing).
	force func(call, layer int) [][]int32
}

// nextThreshold is the official interval update: f = float32(1 + w − 2w·s/S) with w = 0.4 when
// r0 > 0, T = round_half_even(float32(N / f)), and T = 2 inside [⌊0.2S⌋, ⌊0.4S⌋).
func nextThreshold(n int, r0 float64, step, steps int) float64 {
	w := 0.0
	if r0 != 0 {
		w = 0.4
	}
	f := float32((1 + w) - ((2*w)*float64(step))/float64(steps))
	t := float64(float32(math.RoundToEven(float64(float32(float32(n) / f)))))
	if r0 != 0 && step >= int(math.Floor(0.2*float64(steps))) && step < int(math.Floor(0.4*float64(steps))) {
		t = 2
	}
	return max(t, 1) // a threshold of 0 would divide by zero in s mod T; the official code never reaches it
}

func (m *toca) Plan(call, step int) (*hook.Plan, error) {
	l := m.env.Layout
	p := hook.FullPlan(l)
	m.notes = make([]Note, l.Depth)
	stepFull := m.cycle.begin(step)
	for layer := range l.Depth {
		full, tUsed := m.cycle.full(step, stepFull)
		m.notes[layer] = Note{Type: "full", TUsed: f64(tUsed), TAfter: f64(m.cycle.t)}
		bp := &p.Blocks[layer]
		if full {
			bp.Refresh = m.engine.refresh()
			continue
		}
		m.notes[layer].Type = "ToCa"
		m.engine.partial(bp, &m.notes[layer], m.sched, m.r0, layer, call, step, m.env.Steps)
		if m.force != nil {
			bp.Modules[1].Tokens = m.force(call, layer) // teacher forcing: the rule's own choice is only reported
		}
	}
	return p, nil
}

// Observe has nothing to do: the token state lives in the cache, on the device.
func (m *toca) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *toca) Notes() []Note { return m.notes }
