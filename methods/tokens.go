package methods

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cachebench/cachebench/harness/hook"
)

// tokenEngine plans the token-wise steps shared by ToCa and DuCa (Zou et al., ICLR 2025, §3.3;
// docs/methods.md): per partial layer, a selection rule the executor carries out on the device
// — base score, staleness counter per (row, token) with weight λ3/N, the grid bonus, top-k. The
// host decides only how many tokens (a function of the step and layer) and, for the random
// score, draws the base score from (seed, sample, call, layer).
type tokenEngine struct {
	layout     hook.Layout
	rows       int
	n          int     // fresh threshold N, the normaliser of the staleness score
	softWeight float32 // λ3
	grid       int     // grid-bonus cell side g (0 = no bonus)
	beta       float32 // grid-bonus factor
	score      hook.TokenScore
	seed       int64
	samples    []int // sample index of each image row (random scores derive from it)
	pairs      bool  // the CFG halves share one score (PixArt-α)
}

func newTokenEngine(env Env, n int, softWeight, beta float64, grid int, score string) (*tokenEngine, error) {
	l := env.Layout
	if grid > 0 && (l.GridH%grid != 0 || l.GridW%grid != 0) {
		return nil, fmt.Errorf("grid bonus cells of %d do not tile the %d×%d token grid", grid, l.GridH, l.GridW)
	}
	kind, err := hook.ParseTokenScore(score)
	if err != nil {
		return nil, err
	}
	return &tokenEngine{layout: l, rows: env.Rows, n: n, softWeight: float32(softWeight), grid: grid, beta: float32(beta),
		score: kind, seed: env.Seed, samples: env.Samples}, nil
}

// refresh is the base score a full attention stores for later partial steps (none for scores
// computed from the module's current input or drawn at random).
func (e *tokenEngine) refresh() hook.TokenScore {
	if e.score == hook.ScoreAttention || e.score == hook.ScoreValueNorm || e.score == hook.ScoreEntropy {
		return e.score
	}
	return hook.ScoreNone
}

// plan returns the MLP plan of a partial step of the layer that recomputes k tokens per row.
func (e *tokenEngine) plan(layer, call, k int) hook.ModulePlan {
	sel := &hook.Selection{K: k, Score: e.score, StaleWeight: e.softWeight, StaleNorm: e.n, Grid: e.grid, Beta: e.beta,
		Pairs: e.pairs && e.score == hook.ScoreEntropy}
	if e.score == hook.ScoreRandom {
		sel.Random = e.random(layer, call)
	}
	return hook.ModulePlan{Action: hook.Partial, Select: sel}
}

// random draws the random base score of a layer at a call: one CFG half's rows are drawn and
// shared with their null rows (as DuCa-DiT draws one score per image), from (seed, sample index, call, layer).
func (e *tokenEngine) random(layer, call int) [][]float32 {
	out := make([][]float32, e.rows)
	for r := range out {
		img := r % max(1, len(e.samples))
		idx := 0
		if len(e.samples) > 0 {
			idx = e.samples[img]
		}
		rng := rand.New(rand.NewPCG(uint64(e.seed)^0x70ca, uint64(idx)<<32|uint64(call)<<8|uint64(layer)))
		s := make([]float32, e.layout.Tokens)
		for i := range s {
			s[i] = rng.Float32()
		}
		out[r] = s
	}
	return out
}

// cycle is the interval logic ToCa and DuCa share (the official cal_type): a block computes fully
// at the first step and whenever s mod T = 0, and every full block sets T for the steps after it
// (nextThreshold; pixartThreshold when the official step counts up). The official code re-tests
// every layer with the T in force when it gets there, so after a full layer 0 the other layers of
// that step see the new T (faithful); clean mode types a step once, with the T it began with.
type cycle struct {
	n     int     // fresh threshold N: T before the first update
	r0    float64 // fresh ratio (T's update depends on whether it is 0)
	steps int
	clean bool
	t     float64 // the interval threshold in force
	// countUp: the official step counts up from 0 (PixArt-α's DPM-Solver code), the first step
	// is 0 and T follows pixartThreshold with step weight w; otherwise (DiT) the step counts
	// down and the first is S−1.
	countUp bool
	w       float64
}

// first reports whether step is the first of the run.
func (c *cycle) first(step int) bool {
	if c.countUp {
		return step == 0
	}
	return step == c.steps-1
}

// begin starts step s: whether the step as a whole is full (clean mode's test).
func (c *cycle) begin(step int) bool {
	return c.first(step) || math.Mod(float64(step), c.t) == 0
}

// full tests one block at step s (stepFull from begin) and returns the T the test used; a full
// block updates T.
func (c *cycle) full(step int, stepFull bool) (bool, float64) {
	tUsed := c.t
	if c.first(step) {
		tUsed = float64(c.n) // the first step tests with fresh_threshold itself
	}
	full := c.first(step) || math.Mod(float64(step), c.t) == 0
	if c.clean {
		full = stepFull
	}
	if full {
		if c.countUp {
			c.t = pixartThreshold(c.n, c.w, step, c.steps)
		} else {
			c.t = nextThreshold(c.n, c.r0, step, c.steps)
		}
	}
	return full, tUsed
}

// pixartThreshold is PixArt-α ToCa's interval update (force_scheduler), with the step counting
// up: f = float32((1 − w) + 2w·s/S), T = round_half_even(float32(N)/f); w = 0.2 for ToCa (0 for
// a zero fresh ratio, FORA), 0 for DuCa (T = N).
func pixartThreshold(n int, w float64, step, steps int) float64 {
	f := float32((1 - w) + ((2*w)*float64(step))/float64(steps))
	return max(float64(float32(math.RoundToEven(float64(float32(n)/f)))), 1)
}

// partial plans a token-wise step of one block: attention reused, the MLP recomputed for
// k = int(clamp(r)·N) tokens by the engine's rule, r from the ratio schedule; the note gets r.
func (e *tokenEngine) partial(bp *hook.BlockPlan, note *Note, sched ratioSchedule, r0 float64, layer, call, step, steps int) {
	r := sched.ratio(r0, layer, e.layout.Depth, step, steps, ditMLP)
	k, rf := freshCount(r, e.layout.Tokens)
	note.Ratio, note.RatioF32 = f64(r), f64(float64(rf))
	bp.Modules[0] = hook.ModulePlan{Action: hook.Reuse}
	bp.Modules[1] = e.plan(layer, call, k)
}
