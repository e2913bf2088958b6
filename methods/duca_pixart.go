package methods

import (
	"math"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "duca-pixart", Doc: "DuCa on PixArt-α (Zou et al., arXiv 2412.18911; official DuCa-PixArt-alpha, Shenyi-Z/DuCa 0a7151b): " +
		"steps count up and the interval stays N (the official threshold update has step weight 0); step s is full when s mod N = 0, " +
		"conservative (ToCa-PixArt's partial step: self-attention reused, cross-attention and MLP recomputed for the tokens of highest " +
		"cross-attention entropy, staleness and grid bonus) when s mod N is odd, and aggressive otherwise: the whole stack outputs what it " +
		"output at the last non-aggressive step and only the final layer runs, with the current timestep. " +
		"ratio defaults to the official argparse default 0.30; the official README's commands run 0.75",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "fresh threshold: the interval between full steps, also the staleness normaliser"},
			{Name: "ratio", Kind: Float, Default: "0.30", Min: 0, Max: 1, Doc: "fresh ratio r0 of the conservative steps (the official README runs 0.75)"},
			{Name: "scheduler", Kind: Enum, Default: "ToCa", Choices: []string{"ToCa", "constant"}, Doc: "ratio schedule r0·(1.9 − 1.8s/S)·(1.6 − 1.2ℓ/(L−1))·(0.6 cross | 1.6 MLP); constant: r = r0 everywhere"},
			{Name: "soft_fresh_weight", Kind: Float, Default: "0.25", Min: 0, Max: 100, Doc: "λ3, weight of the staleness score s3"},
			{Name: "score", Kind: Enum, Default: "attention", Choices: []string{"attention", "random"},
				Doc: "base score: attention = cross-attention entropy s2 (the official cache_type name), random = uniform, shared by the CFG halves"},
		},
		New: func(v Values, env Env) (Method, error) { return newPixArtTokens(v, env, true) }})
}

// aggressive reports whether a step that is not full is aggressive (DuCa-PixArt's cal_type:
// s mod T even; odd is conservative).
func (m *pixartTokens) aggressive(step int) bool {
	return int(math.Mod(float64(step), m.cycle.t))%2 == 0
}

// aggressivePlan skips the whole stack, outputting the stack output the last non-aggressive call
// kept. Nothing runs inside the stack, so staleness counters, entropy maps and module caches stay
// as they were, as in the official code.
func (m *pixartTokens) aggressivePlan() *hook.Plan {
	l := m.env.Layout
	p := hook.FullPlan(l)
	p.Skip(hook.SpanSkip{Span: hook.Span{From: 0, To: l.Depth - 1}, Mode: hook.SkipReplace})
	m.notes = make([]Note, l.Depth)
	for i := range m.notes {
		m.notes[i] = Note{Type: ducaAggressive, TUsed: f64(m.cycle.t), TAfter: f64(m.cycle.t)}
	}
	return p
}
