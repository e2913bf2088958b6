package simplego

// cachebench patch: float32 ReduceSum / ReduceMax over the last axis (LayerNorm's moments,
// softmax's max and sum) as one tight loop per row instead of upstream's per-element output
// iterator. Each row is reduced left to right from 0 (sum) or the lowest value (max), the
// same order and arithmetic as upstream's execReduceSumGeneric / execReduceMaxGeneric, so the
// results are bit-identical; only the bookkeeping is gone.

import (
	"math"

	"github.com/gomlx/gomlx/backends"
)

// execReduceLastAxisF32 reports whether it computed the reduction (float32, sum or max, over
// the last axis alone).
func execReduceLastAxisF32(op backends.OpType, operand, output *Buffer, reduceAxes []int) bool {
	dims := operand.shape.Dimensions
	if len(reduceAxes) != 1 || len(dims) == 0 || reduceAxes[0] != len(dims)-1 || dims[len(dims)-1] == 0 {
		return false
	}
	if op != backends.OpTypeReduceSum && op != backends.OpTypeReduceMax {
		return false
	}
	in, ok := operand.flat.([]float32)
	if !ok {
		return false
	}
	out := output.flat.([]float32)
	n := dims[len(dims)-1]
	rows := len(in) / n
	if op == backends.OpTypeReduceSum {
		for r := range rows {
			var s float32
			for _, v := range in[r*n : (r+1)*n] {
				s += v
			}
			out[r] = s
		}
		return true
	}
	lowest := float32(math.Inf(-1))
	for r := range rows {
		m := lowest
		for _, v := range in[r*n : (r+1)*n] {
			m = max(m, v)
		}
		out[r] = m
	}
	return true
}
