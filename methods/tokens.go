package methods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

// tokenEngine is the token-wise cache engine shared by ToCa and DuCa (spec §1): per layer, a base
// score refreshed on full steps, a staleness counter per (row, token), the grid bonus, and top-k.
type tokenEngine struct {
	layout     hook.Layout
	rows       int
	n          int     // fresh threshold N, the normaliser of the staleness score
	softWeight float32 // λ3
	grid       int     // grid-bonus cell side g (0 = no bonus)
	beta       float32 // grid-bonus factor
	score      string  // base score: attention | vnorm | random
	seed       int64
	samples    []int // sample index of each image row (random scores derive from it)

	base  [][][]float32 // [layer][row][token]; nil until the layer's first full step
	stale [][][]int32   // [layer][row][token]

	onScore func(layer, call int, scoreIn [][]float32) // tests: sees every score before the bonus
}

func newTokenEngine(env Env, n int, softWeight, beta float64, grid int, score string) (*tokenEngine, error) {
	l := env.Layout
	if grid > 0 && (l.GridH%grid != 0 || l.GridW%grid != 0) {
		return nil, fmt.Errorf("grid bonus cells of %d do not tile the %d×%d token grid", grid, l.GridH, l.GridW)
	}
	e := &tokenEngine{layout: l, rows: env.Rows, n: n, softWeight: float32(softWeight), grid: grid, beta: float32(beta),
		score: score, seed: env.Seed, samples: env.Samples,
		base: make([][][]float32, l.Depth), stale: make([][][]int32, l.Depth)}
	for i := range e.stale {
		e.stale[i] = make([][]int32, env.Rows)
		for r := range e.stale[i] {
			e.stale[i][r] = make([]int32, l.Tokens)
		}
	}
	return e, nil
}

// reset is a full compute of the layer's module: every counter back to 0.
func (e *tokenEngine) reset(layer int) {
	for _, row := range e.stale[layer] {
		clear(row)
	}
}

// observeAttention stores s1 from a head-averaged attention map [rows, query, key]: the attention
// each token receives (column sum over queries), L2-normalised over tokens per row.
func (e *tokenEngine) observeAttention(layer int, amap *tensors.Tensor) error {
	n := e.layout.Tokens
	data, err := tensors.CopyFlatData[float32](amap)
	if err != nil {
		return err
	}
	if len(data) != e.rows*n*n {
		return fmt.Errorf("layer %d: attention map has %d values, want %d×%d×%d", layer, len(data), e.rows, n, n)
	}
	base := make([][]float32, e.rows)
	for r := range base {
		col := make([]float64, n)
		for q := range n {
			row := data[(r*n+q)*n : (r*n+q+1)*n]
			for k, v := range row {
				col[k] += float64(v)
			}
		}
		base[r] = l2normalize(col)
	}
	e.base[layer] = base
	return nil
}

// observeValueNorms stores DuCa's V-caching score from value norms [rows, heads, N]:
// u_i = Σ_h (1 − ‖v_{i,h}‖), L2-normalised over tokens per row (spec §3.5), so the tokens with the
// smallest value norms rank first.
func (e *tokenEngine) observeValueNorms(layer int, vn *tensors.Tensor) error {
	n, heads := e.layout.Tokens, e.layout.Heads
	data, err := tensors.CopyFlatData[float32](vn)
	if err != nil {
		return err
	}
	if heads <= 0 || len(data) != e.rows*heads*n {
		return fmt.Errorf("layer %d: value norms have %d values, want %d×%d×%d", layer, len(data), e.rows, heads, n)
	}
	base := make([][]float32, e.rows)
	for r := range base {
		u := make([]float64, n)
		for h := range heads {
			for i, v := range data[(r*heads+h)*n : (r*heads+h+1)*n] {
				u[i] += 1 - float64(v)
			}
		}
		base[r] = l2normalize(u)
	}
	e.base[layer] = base
	return nil
}

// request asks a full attention of the layer for the side information the base score needs.
func (e *tokenEngine) request(bp *hook.BlockPlan) {
	bp.AttnMap = e.score == "attention"
	bp.ValueNorms = e.score == "vnorm"
}

// observe refreshes the base score of every layer whose full attention returned side information
// at this call (a nil cache is a dry run: there is none).
func (e *tokenEngine) observe(p *hook.Plan, c *hook.Cache) error {
	if c == nil {
		return nil
	}
	for layer, bp := range p.Blocks {
		if bp.Modules[0].Action != hook.Full {
			continue
		}
		var err error
		switch {
		case bp.AttnMap && c.AttnMap(layer) != nil:
			err = e.observeAttention(layer, c.AttnMap(layer))
		case bp.ValueNorms && c.ValueNorms(layer) != nil:
			err = e.observeValueNorms(layer, c.ValueNorms(layer))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// l2normalize is F.normalize(p=2): x / max(‖x‖, 1e-12), returned as float32.
func l2normalize(x []float64) []float32 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	norm := max(math.Sqrt(ss), 1e-12)
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v / norm)
	}
	return out
}

// scoreIn is the score before the grid bonus: base + λ3·stale/N, in float32 as the reference.
func (e *tokenEngine) scoreIn(layer, call int) [][]float32 {
	n := e.layout.Tokens
	out := make([][]float32, e.rows)
	for r := range out {
		s := make([]float32, n)
		switch {
		case e.score == "random":
			// Random scores are drawn for one CFG half and shared with its null row (spec §2.1).
			img := r % max(1, len(e.samples))
			idx := 0
			if len(e.samples) > 0 {
				idx = e.samples[img]
			}
			rng := rand.New(rand.NewPCG(uint64(e.seed)^0x70ca, uint64(idx)<<32|uint64(call)<<8|uint64(layer)))
			for i := range s {
				s[i] = rng.Float32()
			}
		case e.base[layer] != nil:
			copy(s, e.base[layer][r])
		}
		// Without a base score yet (a FLOPs dry run) the staleness term alone orders tokens.
		for i := range s {
			s[i] += float32(e.softWeight*float32(e.stale[layer][r][i])) / float32(e.n)
		}
		out[r] = s
	}
	return out
}

// choose picks k fresh tokens per row for a partial step of the layer's MLP. The caller then
// calls markFresh with the tokens actually recomputed.
func (e *tokenEngine) choose(layer, call, k int) [][]int32 {
	in := e.scoreIn(layer, call)
	if e.onScore != nil {
		e.onScore(layer, call, in)
	}
	fresh := make([][]int32, e.rows)
	for r, s := range in {
		if e.grid > 0 {
			s = GridBonus(s, e.layout.GridH, e.layout.GridW, e.grid, e.beta)
		}
		fresh[r] = TopK(s, k)
	}
	return fresh
}

// plan returns the MLP plan of a partial step of the layer that recomputes k tokens per row. Base
// scores known before the call choose now; `similarity` and `norm` need the MLP's current input,
// so the choice is deferred into the forward (hook.Chooser), where the model's score of that
// input becomes the base score. override, when set (tests), replaces the own choice.
func (e *tokenEngine) plan(layer, call, k int, override func(own [][]int32) [][]int32) (hook.ModulePlan, error) {
	pick := func() [][]int32 {
		fresh := e.choose(layer, call, k)
		if override != nil {
			fresh = override(fresh)
		}
		e.markFresh(layer, fresh) // counters follow the tokens actually recomputed
		return fresh
	}
	var kind hook.TokenScore
	switch e.score {
	case "similarity":
		kind = hook.ScoreSimilarity
	case "norm":
		kind = hook.ScoreNorm
	default:
		return hook.ModulePlan{Action: hook.Partial, Tokens: pick()}, nil
	}
	return hook.ModulePlan{Action: hook.Partial, Choose: &hook.Chooser{Score: kind, Pick: func(score [][]float32) ([][]int32, error) {
		if len(score) != e.rows {
			return nil, fmt.Errorf("layer %d: %s score for %d rows, want %d", layer, e.score, len(score), e.rows)
		}
		base := make([][]float32, e.rows)
		for r, row := range score {
			if len(row) != e.layout.Tokens {
				return nil, fmt.Errorf("layer %d: %s score of row %d has %d tokens, want %d", layer, e.score, r, len(row), e.layout.Tokens)
			}
			base[r] = append([]float32(nil), row...)
		}
		e.base[layer] = base
		return pick(), nil
	}}}, nil
}

// resolve makes the deferred token choices of a plan that no model runs (FLOPs dry runs) with a
// zero base score, so the staleness term alone orders tokens, as for the other scores.
func resolve(p *hook.Plan, rows, tokens int) error {
	zero := make([][]float32, rows)
	for r := range zero {
		zero[r] = make([]float32, tokens)
	}
	for b := range p.Blocks {
		for i, mp := range p.Blocks[b].Modules {
			if mp.Action == hook.Partial && mp.Tokens == nil && mp.Choose != nil {
				fresh, err := mp.Choose.Pick(zero)
				if err != nil {
					return err
				}
				p.Blocks[b].Modules[i].Tokens = fresh
			}
		}
	}
	return nil
}

// markFresh updates the staleness counters after scoring: all +1, the fresh tokens back to 0.
func (e *tokenEngine) markFresh(layer int, fresh [][]int32) {
	for r, row := range e.stale[layer] {
		for i := range row {
			row[i]++
		}
		for _, t := range fresh[r] {
			row[t] = 0
		}
	}
}

// GridBonus adds β·score to the best token of every g×g cell of the h×w token grid (row-major
// tokens; first token in cell order on ties), computed in float32 as s + s·β (spec §1.3).
func GridBonus(score []float32, h, w, g int, beta float32) []float32 {
	out := append([]float32(nil), score...)
	for ci := 0; ci < h; ci += g {
		for cj := 0; cj < w; cj += g {
			best := -1
			for u := range g {
				for v := range g {
					t := (ci+u)*w + cj + v
					if best < 0 || score[t] > score[best] {
						best = t
					}
				}
			}
			out[best] = score[best] + float32(score[best]*beta)
		}
	}
	return out
}

// TopK returns the indices of the k highest scores, highest first (ties: lower index first; the
// reference's argsort is not stable, so exact ties are arbitrary there).
func TopK(score []float32, k int) []int32 {
	idx := make([]int32, len(score))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	return append([]int32(nil), idx[:min(k, len(idx))]...)
}
