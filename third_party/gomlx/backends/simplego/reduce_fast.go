package simplego

// cachebench patch: ReduceSum / ReduceMax / ReduceMin over consecutive axes (LayerNorm's moments,
// softmax's max and sum, attention received, the token rules' integer counts) as tight loops
// instead of upstream's per-element output iterator. Each output element is reduced in
// increasing flat index from 0 (sum) or the lowest / highest value (max / min), the same order
// and arithmetic as upstream's execReduce{Sum,Max,Min}Generic, so the results are bit-identical;
// only the bookkeeping is gone.

import (
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// execReduceConsecutive reports whether it computed the reduction: a plain numeric type, sum,
// max or min, over one run of consecutive axes (the last axis alone, or a middle run).
func execReduceConsecutive(op backends.OpType, operand, output *Buffer, reduceAxes []int) bool {
	dims := operand.shape.Dimensions
	if len(reduceAxes) == 0 || len(dims) == 0 || operand.shape.Size() == 0 {
		return false
	}
	if op != backends.OpTypeReduceSum && op != backends.OpTypeReduceMax && op != backends.OpTypeReduceMin {
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
	dt := operand.shape.DType
	switch in := operand.flat.(type) {
	case []float32:
		reduceConsecutive(op, dt, in, output.flat.([]float32), outer, mid, inner)
	case []float64:
		reduceConsecutive(op, dt, in, output.flat.([]float64), outer, mid, inner)
	case []int32:
		reduceConsecutive(op, dt, in, output.flat.([]int32), outer, mid, inner)
	case []int64:
		reduceConsecutive(op, dt, in, output.flat.([]int64), outer, mid, inner)
	default:
		return false
	}
	return true
}

func reduceConsecutive[T PODNumericConstraints](op backends.OpType, dt dtypes.DType, in, out []T, outer, mid, inner int) {
	in, out = in[:outer*mid*inner], out[:outer*inner]
	var init T // sum: 0
	switch op {
	case backends.OpTypeReduceMax:
		init = dt.LowestValue().(T)
	case backends.OpTypeReduceMin:
		init = dt.HighestValue().(T)
	}
	if inner == 1 {
		for r := range outer {
			a := init
			row := in[r*mid : (r+1)*mid]
			switch op {
			case backends.OpTypeReduceSum:
				for _, v := range row {
					a += v
				}
			case backends.OpTypeReduceMax:
				for _, v := range row {
					a = max(a, v)
				}
			default:
				for _, v := range row {
					a = min(a, v)
				}
			}
			out[r] = a
		}
		return
	}
	for o := range outer {
		acc := out[o*inner : (o+1)*inner]
		for i := range acc {
			acc[i] = init
		}
		for m := range mid {
			row := in[(o*mid+m)*inner : (o*mid+m+1)*inner]
			switch op {
			case backends.OpTypeReduceSum:
				for i, v := range row {
					acc[i] += v
				}
			case backends.OpTypeReduceMax:
				for i, v := range row {
					acc[i] = max(acc[i], v)
				}
			default:
				for i, v := range row {
					acc[i] = min(acc[i], v)
				}
			}
		}
	}
}
