package simplego

// cachebench patch: float32 ReduceSum / ReduceMax over consecutive axes (LayerNorm's moments,
// softmax's max and sum, attention received) as tight loops instead of upstream's per-element
// output iterator. Each row is reduced left to right from 0 (sum) or the lowest value (max), the
// same order and arithmetic as upstream's execReduceSumGeneric / execReduceMaxGeneric, so the
// results are bit-identical; only the bookkeeping is gone.

import (
	"math"
	"slices"

	"github.com/gomlx/gomlx/backends"
)

// execReduceLastAxisF32 reports whether it computed the reduction: float32, sum or max, over
// one run of consecutive axes (the last axis alone, or a middle run such as the query axis of an
// attention map). Either way each output element takes its inputs in increasing flat index, as
// upstream's iterator does.
func execReduceLastAxisF32(op backends.OpType, operand, output *Buffer, reduceAxes []int) bool {
	dims := operand.shape.Dimensions
	if len(reduceAxes) == 0 || len(dims) == 0 || operand.shape.Size() == 0 {
		return false
	}
	if op != backends.OpTypeReduceSum && op != backends.OpTypeReduceMax {
		return false
	}
	in, ok := operand.flat.([]float32)
	if !ok {
		return false
	}
	axes := append([]int(nil), reduceAxes...)
	slices.Sort(axes)
	for i := 1; i < len(axes); i++ {
		if axes[i] != axes[i-1]+1 {
			return false
		}
	}
	outer, mid, inner := 1, 1, 1
	for a, d := range dims {
		switch {
		case a < axes[0]:
			outer *= d
		case a <= axes[len(axes)-1]:
			mid *= d
		default:
			inner *= d
		}
	}
	in = in[:outer*mid*inner]
	out := output.flat.([]float32)[:outer*inner]
	sum := op == backends.OpTypeReduceSum
	if inner == 1 {
		for r := range outer {
			if sum {
				var s float32
				for _, v := range in[r*mid : (r+1)*mid] {
					s += v
				}
				out[r] = s
			} else {
				m := float32(math.Inf(-1))
				for _, v := range in[r*mid : (r+1)*mid] {
					m = max(m, v)
				}
				out[r] = m
			}
		}
		return true
	}
	for o := range outer {
		acc := out[o*inner : (o+1)*inner]
		first := in[o*mid*inner : o*mid*inner+inner]
		if sum {
			for i, v := range first {
				acc[i] = 0 + v
			}
		} else {
			for i, v := range first {
				acc[i] = max(float32(math.Inf(-1)), v)
			}
		}
		for m := 1; m < mid; m++ {
			row := in[(o*mid+m)*inner : (o*mid+m+1)*inner]
			if sum {
				for i, v := range row {
					acc[i] += v
				}
			} else {
				for i, v := range row {
					acc[i] = max(acc[i], v)
				}
			}
		}
	}
	return true
}
