package executor

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// baseScore turns a full attention's side information into the stored base score.
func baseScore(kind hook.TokenScore, info *Node) *Node {
	switch kind {
	case hook.ScoreEntropy:
		return info // per-row entropy terms, paired and normalised when a choice reads them
	case hook.ScoreValueNorm:
		// u_i = Σ_h (1 − ‖v_{i,h}‖): tokens with small value norms rank first.
		return l2normalize(ReduceSum(OneMinus(info), 1))
	}
	return l2normalize(info)
}

// l2normalize is F.normalize(p=2) over the last axis: x / max(‖x‖, 1e-12).
func l2normalize(x *Node) *Node {
	return Div(x, MaxScalar(Sqrt(ReduceAndKeep(Square(x), ReduceSum, -1)), 1e-12))
}

// vectorNorm is ‖x‖ over the last axis.
func vectorNorm(x *Node) *Node { return Sqrt(ReduceSum(Square(x), -1)) }

// gridBonus adds β·s to the best token of every g×g cell of the h×w token grid (row-major
// tokens; the first token in cell order on ties), as s + float32(s·β) (ToCa's grid bonus).
func gridBonus(s *Node, h, w, g int, beta float32) *Node {
	B := s.Shape().Dimensions[0]
	cells := Reshape(TransposeAllAxes(Reshape(s, B, h/g, g, w/g, g), 0, 1, 3, 2, 4), B, h/g, w/g, g*g)
	dims := cells.Shape().Dimensions
	idx := Iota(s.Graph(), shapes.Make(dtypes.Int32, dims...), 3)
	first := Equal(idx, BroadcastToDims(InsertAxes(firstArgMax(cells), -1), dims...))
	bonus := Where(first, Add(cells, MulScalar(cells, float64(beta))), cells)
	return Reshape(TransposeAllAxes(Reshape(bonus, B, h/g, w/g, g, g), 0, 1, 3, 2, 4), B, h*w)
}

// rankDescending is each score's position in descending order, ties broken by the lower index
// first: rank_i = #{j : s_j > s_i} + #{j < i : s_j = s_i}. It is exact and O(N²) per row, which
// GoMLX (no sort op) allows and a few thousand tokens afford.
func rankDescending(s *Node) *Node {
	g := s.Graph()
	n := s.Shape().Dimensions[1]
	iota := Iota(g, shapes.Make(dtypes.Int32, n), 0)
	before := InsertAxes(LessThan(InsertAxes(iota, 0), InsertAxes(iota, -1)), 0) // [1, i, j]: j < i
	si, sj := InsertAxes(s, -1), InsertAxes(s, 1)                                // [B, i, 1], [B, 1, j]
	si = BroadcastToDims(si, s.Shape().Dimensions[0], n, n)
	sj = BroadcastToDims(sj, s.Shape().Dimensions[0], n, n)
	before = BroadcastToDims(before, s.Shape().Dimensions[0], n, n)
	beats := Or(GreaterThan(sj, si), And(Equal(sj, si), before))
	return ReduceSum(ConvertDType(beats, dtypes.Int32), -1)
}

// argsort inverts a rank [B, N] (a permutation per row): order[b, r] = the token of rank r.
func argsort(rank *Node) *Node {
	g := rank.Graph()
	B, n := rank.Shape().Dimensions[0], rank.Shape().Dimensions[1]
	rowIdx := Iota(g, shapes.Make(dtypes.Int32, B, n), 0)
	tokens := Iota(g, shapes.Make(dtypes.Int32, B, n), 1)
	return Scatter(Stack([]*Node{rowIdx, rank}, -1), tokens, shapes.Make(dtypes.Int32, B, n), false, true)
}

// GatherRows picks rows idx [B, K] (int32) of x [B, N, D] per batch row → [B, K, D] (models use
// it for their partial modules).
func GatherRows(x, idx *Node) *Node {
	g := idx.Graph()
	B, K := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	bIdx := Iota(g, shapes.Make(dtypes.Int32, B, K), 0)
	return Gather(x, Stack([]*Node{bIdx, idx}, -1))
}

// tokenBucket pads a partial token count so that the number of compiled shapes stays bounded
// (at most 16 buckets per token count n); padded rows are computed and then ignored.
func tokenBucket(k, n int) int {
	step := max(1, n/16)
	return min(n, (k+step-1)/step*step)
}

// partialIndices builds, for planned tokens, the padded index tensor [B, K'] and the inverse map
// [B, N] that sends each token either to its fresh row j (< K') or to its cached row K' + n.
func partialIndices(rows [][]int32, n, kp int) (idx, inv *tensors.Tensor) {
	B, k := len(rows), len(rows[0])
	flatIdx := make([]int32, B*kp)
	flatInv := make([]int32, B*n)
	for b, row := range rows {
		for i := range n {
			flatInv[b*n+i] = int32(kp + i)
		}
		for j := range kp {
			flatIdx[b*kp+j] = row[min(j, k-1)] // padding repeats the last index; its result is never read
		}
		for j, tok := range row {
			flatInv[b*n+int(tok)] = int32(j)
		}
	}
	return tensors.FromFlatDataAndDimensions(flatIdx, B, kp), tensors.FromFlatDataAndDimensions(flatInv, B, n)
}

// firstK copies the first k token indices of every row of t [B, K'] to the host.
func firstK(t *tensors.Tensor, k int) [][]int32 {
	flat := tensors.MustCopyFlatData[int32](t)
	B := t.Shape().Dimensions[0]
	kp := len(flat) / max(B, 1)
	out := make([][]int32, B)
	for r := range out {
		out[r] = append([]int32{}, flat[r*kp:r*kp+min(k, kp)]...)
	}
	return out
}

// rowsOf copies t [B, n] to the host as rows.
func rowsOf(t *tensors.Tensor, n int) [][]float32 {
	flat := tensors.MustCopyFlatData[float32](t)
	out := make([][]float32, len(flat)/n)
	for r := range out {
		out[r] = flat[r*n : (r+1)*n]
	}
	return out
}

func flatten(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func anyOf(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

func (e *Executor) setProbeNames(names []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.probeNames = names
}

// Choose runs a selection rule's grid bonus and top-k on the device, as a block graph does, on
// scores given before the bonus: it returns the scores after the bonus and the chosen tokens per
// row, highest first. For tests and readers; a run never leaves the block graph to choose.
func Choose(b backends.Backend, l hook.Layout, s hook.Selection, scoreIn [][]float32) (scored [][]float32, fresh [][]int32, err error) {
	if len(scoreIn) == 0 || s.K < 1 || s.K > l.Tokens {
		return nil, nil, fmt.Errorf("choose %d of %d tokens from %d rows", s.K, l.Tokens, len(scoreIn))
	}
	err = gx.Catch(func() {
		e := MustNewExec(b, func(x *Node) (*Node, *Node) {
			out := x
			if s.Grid > 0 {
				out = gridBonus(x, l.GridH, l.GridW, s.Grid, s.Beta)
			}
			return out, Slice(argsort(rankDescending(out)), AxisRange(), AxisRange(0, s.K))
		})
		outs := e.MustExec(tensors.FromFlatDataAndDimensions(flatten(scoreIn), len(scoreIn), l.Tokens))
		scored, fresh = rowsOf(outs[0], l.Tokens), firstK(outs[1], s.K)
		for _, t := range outs {
			t.MustFinalizeAll()
		}
	})
	return scored, fresh, err
}
