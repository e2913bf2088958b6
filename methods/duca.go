package methods

import (
	"fmt"
	"math"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "duca", Doc: "DuCa (Zou et al., arXiv 2412.18911): ToCa's token-wise engine with three step types per interval " +
		"(full; conservative = ToCa partial step; aggressive = the whole block stack skipped, its last output reused), DiT code semantics. " +
		"faithful keeps the official mid-step interval update (a full layer 0 changes T and the other layers re-test, giving steps that " +
		"are full in layer 0 only, then conservative or aggressive); clean types each step once, with T as it was when the step began",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "fresh threshold: nominal interval between full steps, also the staleness normaliser"},
			{Name: "ratio", Kind: Float, Default: "0.05", Min: 0, Max: 1, Doc: "fresh ratio r0: fraction of tokens recomputed at a conservative step before the schedules"},
			{Name: "scheduler", Kind: Enum, Default: "ToCa", Choices: []string{"ToCa", "ToCa-ddim50", "ToCa-ddpm250", "constant"},
				Doc: "ratio schedule over steps and layers: ToCa is DuCa-DiT's name for ToCa-ddim50's weights (ws 2.0, wl −0.2); ToCa-ddpm250 and constant are not in DuCa's code"},
			{Name: "score", Kind: Enum, Default: "attention", Choices: []string{"attention", "vnorm", "random", "similarity", "norm"},
				Doc: "base token score: attention received (s1), V-caching value norms (tokens with small ‖v‖ first), uniform random, 1 − cos(MLP input, cached MLP output), or ‖MLP input‖"},
			{Name: "soft_fresh_weight", Kind: Float, Default: "0.25", Min: 0, Max: 100, Doc: "λ3, weight of the staleness score s3"},
			{Name: "mode", Kind: Enum, Default: "faithful", Choices: []string{"faithful", "clean"}, Doc: "faithful: official mid-step interval update; clean: one decision per step"},
		},
		New: func(v Values, env Env) (Method, error) {
			if err := ditLayout(env.Layout); err != nil {
				return nil, err
			}
			name := v.String("scheduler")
			if name == "ToCa" {
				name = "ToCa-ddim50"
			}
			sched, err := tocaSchedule(name)
			if err != nil {
				return nil, err
			}
			// DuCa-DiT's grid bonus: 2×2 cells as ToCa, but β = 0.8 (DuCa-DiT/cache_functions/cache_cutfresh.py).
			e, err := newTokenEngine(env, v.Int("N"), v.Float("soft_fresh_weight"), 0.8, 2, v.String("score"))
			if err != nil {
				return nil, err
			}
			return &duca{env: env, r0: v.Float("ratio"), sched: sched, engine: e,
				cycle: cycle{n: v.Int("N"), r0: v.Float("ratio"), steps: env.Steps, clean: v.String("mode") == "clean", t: float64(v.Int("N"))}}, nil
		}})
}

// Block types of DuCa, as the official code names them (conservative is its ToCa step).
const (
	ducaFull         = "full"
	ducaConservative = "ToCa"
	ducaAggressive   = "aggressive"
)

// duca is DuCa on DiT (docs/methods.md). Its interval threshold T follows ToCa's update rule; within
// a cycle, q = s mod T odd is a conservative step (attention reused, MLP recomputed for k tokens)
// and q even, ≠ 0, an aggressive step: the stack's output of the last non-aggressive call replaces
// the stack (only the final layer runs, with the current timestep; in faithful mode a step whose
// layer 0 is full runs that layer first, see Plan). Aggressive steps advance no
// counters.
type duca struct {
	env    Env
	r0     float64
	sched  ratioSchedule
	engine *tokenEngine
	cycle  cycle
	notes  []Note
}

// blockType decides one block: full by the shared cycle; otherwise q = s mod T odd is
// conservative, even aggressive (T as in force after the full blocks before it).
func (m *duca) blockType(step int, stepFull bool) (typ string, tUsed float64) {
	full, tUsed := m.cycle.full(step, stepFull)
	switch {
	case full:
		return ducaFull, tUsed
	case int(math.Mod(float64(step), m.cycle.t))%2 == 1:
		return ducaConservative, tUsed
	}
	return ducaAggressive, tUsed
}

func (m *duca) Plan(call, step int) (*hook.Plan, error) {
	l := m.env.Layout
	p := hook.FullPlan(l)
	m.notes = make([]Note, l.Depth)
	stepFull := m.cycle.begin(step)
	aggressive := -1 // first aggressive block
	for layer := range l.Depth {
		typ, tUsed := m.blockType(step, stepFull)
		note := Note{Type: typ, TUsed: f64(tUsed), TAfter: f64(m.cycle.t)}
		bp := &p.Blocks[layer]
		switch typ {
		case ducaFull:
			bp.Refresh = m.engine.refresh()
		case ducaConservative:
			m.engine.partial(bp, &note, m.sched, m.r0, layer, call, step, m.env.Steps)
		case ducaAggressive:
			if aggressive < 0 {
				aggressive = layer
			}
		}
		if aggressive >= 0 && typ != ducaAggressive {
			// T only changes at full blocks, so once a block is aggressive the rest of the step is too.
			return nil, fmt.Errorf("duca: block %d is %s after aggressive block %d at step %d", layer, typ, aggressive, step)
		}
		m.notes[layer] = note
	}
	whole := hook.Span{From: 0, To: l.Depth - 1}
	switch {
	case aggressive < 0:
		// Every non-aggressive call stores the stack's output for the next aggressive one.
		p.Keep = []hook.Span{whole}
	case aggressive == 0:
		p.Skip(hook.SpanSkip{Span: whole, Mode: hook.SkipReplace})
	default:
		// A full layer 0 ran first (it refreshes its caches), then blocks 1..L−2 pass their input
		// through and the last block outputs the whole stack's stored output.
		p.Skip(hook.SpanSkip{Span: hook.Span{From: aggressive, To: l.Depth - 1}, Mode: hook.SkipReplace, Source: &whole})
	}
	return p, nil
}

// Observe has nothing to do: the token state lives in the cache, on the device.
func (m *duca) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *duca) Notes() []Note { return m.notes }
