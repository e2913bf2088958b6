package executor

import (
	"sort"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

// The token rule on the host. On the pure-Go backend the "device" is this process's memory, so
// a [rows, tokens] score costs nothing to read, while the graph's O(N²) rank costs the small
// models this backend runs as much as the partial MLP it saves (about 2 ms per partial layer at
// 256 tokens, 2 rows): there, scores that are known before the block runs (attention, value
// norms, random) are ranked here and enter the block graph as planned tokens. Scores of the
// module's current input, and every score on other backends, are ranked in the graph. Both
// follow the same rule, bit for bit (tests: TestStalenessAndChoice on both paths, TestToCaGolden on both paths).

// hostChoice reports whether a partial module's choice is made on the host.
// A block whose plan refreshes its base score in this call chooses in the graph, where the
// choice sees the refreshed score.
func (e *Executor) hostChoice(mp hook.ModulePlan, bp *hook.BlockPlan, opt hook.Options) bool {
	s := mp.Select
	return e.hostRanks && !opt.DeviceChoice && s != nil && s.K > 0 && bp.Refresh == hook.ScoreNone &&
		(s.Score == hook.ScoreAttention || s.Score == hook.ScoreValueNorm || s.Score == hook.ScoreRandom)
}

// chooseOnHost applies the rule to the stored base score and staleness counters of a module.
func (e *Executor) chooseOnHost(b, m int, s *hook.Selection, c *hook.Cache, rows int) (scoreIn [][]float32, fresh [][]int32) {
	n := e.layout.Tokens
	read := func(t *tensors.Tensor) []float32 {
		if t == nil {
			return make([]float32, rows*n)
		}
		return tensors.MustCopyFlatData[float32](t)
	}
	var base []float32
	if s.Score == hook.ScoreRandom {
		base = flatten(s.Random)
	} else {
		base = read(c.Base(b))
	}
	stale := read(c.Stale(b, m))
	scoreIn, fresh = make([][]float32, rows), make([][]int32, rows)
	for r := range rows {
		in := make([]float32, n)
		for i := range in {
			in[i] = base[r*n+i] + float32(s.StaleWeight*stale[r*n+i])/float32(s.StaleNorm)
		}
		scored := in
		if s.Grid > 0 {
			scored = GridBonus(in, e.layout.GridH, e.layout.GridW, s.Grid, s.Beta)
		}
		scoreIn[r], fresh[r] = in, TopK(scored, s.K)
	}
	return scoreIn, fresh
}

// GridBonus adds β·score to the best token of every g×g cell of the h×w token grid (row-major
// tokens; first token in cell order on ties), computed in float32 as s + s·β (the graph's gridBonus, on the host).
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
// reference's argsort is not stable, so exact ties are arbitrary there): the graph's rank, on the
// host.
func TopK(score []float32, k int) []int32 {
	idx := make([]int32, len(score))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	return append([]int32(nil), idx[:min(k, len(idx))]...)
}
