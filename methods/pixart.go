package methods

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "toca-pixart", Doc: "ToCa on PixArt-α (Zou et al., ICLR 2025; official PixArt-alpha-ToCa): between full steps the self-attention is reused " +
		"and the cross-attention and MLP are recomputed for the tokens of highest cross-attention entropy (shared by the two CFG halves), staleness and grid bonus; steps count up",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "fresh threshold: nominal interval between full steps, also the staleness normaliser"},
			{Name: "ratio", Kind: Float, Default: "0.30", Min: 0, Max: 1, Doc: "fresh ratio r0 (the paper's R = 1 − r0: 0.30 is \"R = 70%\")"},
			{Name: "scheduler", Kind: Enum, Default: "ToCa", Choices: []string{"ToCa", "constant"}, Doc: "ratio schedule r0·(1.9 − 1.8s/S)·(1.6 − 1.2ℓ/(L−1))·(0.6 cross | 1.6 MLP); constant: r = r0 everywhere"},
			{Name: "soft_fresh_weight", Kind: Float, Default: "0.25", Min: 0, Max: 100, Doc: "λ3, weight of the staleness score s3"},
			{Name: "score", Kind: Enum, Default: "attention", Choices: []string{"attention", "random"},
				Doc: "base score: attention = cross-attention entropy s2 (the official cache_type name), random = uniform, shared by the CFG halves"},
			{Name: "mode", Kind: Enum, Default: "faithful", Choices: []string{"faithful", "clean"}, Doc: "faithful keeps the official mid-step interval update; clean decides full steps once per step"},
		},
		New: func(v Values, env Env) (Method, error) { return newPixArtTokens(v, env, false) }})
}

// pixartTokens is ToCa (and, with aggressive steps, DuCa) on PixArt-α, following the official
// PixArt code: the official step counts up (model call k is step k), a full block computes all
// three modules and refreshes the cross-attention entropy; a partial one reuses the attention and
// recomputes k_cross and k_mlp tokens, each module with its own staleness counters.
type pixartTokens struct {
	env    Env
	r0     float64
	sched  ratioSchedule
	engine *tokenEngine
	cycle  cycle
	notes  []Note
	duca   bool
	// force, when set (tests), replaces the cross and MLP token choices (teacher forcing).
	force func(call, layer int, module hook.Module) [][]int32
}

func newPixArtTokens(v Values, env Env, duca bool) (*pixartTokens, error) {
	l := env.Layout
	if len(l.Modules) != 3 || l.Modules[0] != hook.Attn || l.Modules[1] != hook.CrossAttn || l.Modules[2] != hook.MLP {
		return nil, fmt.Errorf("needs a PixArt-α-like model (blocks of attention, cross-attention, MLP); for DiT use toca or duca")
	}
	sched := ratioSchedule{ws: 0.9, wl: 0.6}
	if v.String("scheduler") == "constant" {
		sched = ratioSchedule{constant: true}
	}
	score := v.String("score")
	if score == "attention" {
		score = hook.ScoreEntropy.String()
	}
	// PixArt-α's grid bonus: 4×4 cells, β = 0.4 (cache_cutfresh.local_selection_with_bonus).
	e, err := newTokenEngine(env, v.Int("N"), v.Float("soft_fresh_weight"), 0.4, 4, score)
	if err != nil {
		return nil, err
	}
	// The official score averages the two CFG halves (rows r and r + B/2) and repeats it.
	e.pairs = env.Rows%2 == 0 && (len(env.Samples) == 0 || env.Rows == 2*len(env.Samples))
	w := 0.2 // force_scheduler's step weight, 0 for a zero fresh ratio (FORA)
	if v.Float("ratio") == 0 || duca {
		w = 0
	}
	// DuCa-PixArt types each step once (its interval never changes), so it takes no mode.
	clean := duca
	if !duca {
		clean = v.String("mode") == "clean"
	}
	return &pixartTokens{env: env, r0: v.Float("ratio"), sched: sched, engine: e, duca: duca,
		cycle: cycle{n: v.Int("N"), r0: v.Float("ratio"), steps: env.Steps, clean: clean, t: float64(v.Int("N")), countUp: true, w: w}}, nil
}

func (m *pixartTokens) Plan(call, _ int) (*hook.Plan, error) {
	l := m.env.Layout
	step := call // the official PixArt step counts up with the model calls
	stepFull := m.cycle.begin(step)
	if m.duca && !stepFull && m.aggressive(step) {
		return m.aggressivePlan(), nil
	}
	p := hook.FullPlan(l)
	m.notes = make([]Note, l.Depth)
	for layer := range l.Depth {
		full, tUsed := m.cycle.full(step, stepFull)
		m.notes[layer] = Note{Type: "full", TUsed: f64(tUsed), TAfter: f64(m.cycle.t)}
		bp := &p.Blocks[layer]
		if full {
			bp.Refresh = m.engine.refresh()
			continue
		}
		m.notes[layer].Type = "ToCa"
		bp.Modules[0] = hook.ModulePlan{Action: hook.Reuse}
		for i, mod := range []struct {
			idx   int
			fType float64
		}{{1, pixartCross}, {2, pixartMLP}} {
			r := m.sched.ratio(m.r0, layer, l.Depth, step, m.env.Steps, mod.fType)
			k, rf := freshCount(r, l.Tokens)
			if i == 0 {
				m.notes[layer].CrossRatio, m.notes[layer].CrossRatioF32 = f64(r), f64(float64(rf))
			} else {
				m.notes[layer].Ratio, m.notes[layer].RatioF32 = f64(r), f64(float64(rf))
			}
			bp.Modules[mod.idx] = m.engine.plan(layer, call, k)
			if m.force != nil {
				bp.Modules[mod.idx].Tokens = m.force(call, layer, l.Modules[mod.idx])
			}
		}
	}
	if m.duca {
		// The next aggressive step outputs what the stack outputs now.
		p.Keep = []hook.Span{{From: 0, To: l.Depth - 1}}
	}
	return p, nil
}

// Observe has nothing to do: the token state lives in the cache, on the device.
func (m *pixartTokens) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *pixartTokens) Notes() []Note { return m.notes }

// ditLayout refuses models whose blocks are not DiT's [attention, MLP] (the DiT semantics of
// toca and duca index them so).
func ditLayout(l hook.Layout) error {
	if len(l.Modules) != 2 || l.Modules[0] != hook.Attn || l.Modules[1] != hook.MLP {
		return fmt.Errorf("needs a DiT-like model (blocks of attention, MLP); for PixArt-α use toca-pixart or duca-pixart")
	}
	return nil
}
