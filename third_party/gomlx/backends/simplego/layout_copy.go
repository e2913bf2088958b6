package simplego

// cachebench patch: BroadcastInDim and Transpose of float32, float64, int32, int64 and bool
// without upstream's per-element index iterators. A broadcast copies the trailing axes the
// operand shares with the output as one block and fills a broadcast axis by copying the first
// slice it produced; a transpose walks its output in order with an odometer over the source.
// Same values, bit for bit (both only copy).

// broadcastBlocks fills out (shape outDims) from src, whose dims equal outDims or are 1 (same rank).
func broadcastBlocks[T any](src []T, srcDims []int, out []T, outDims []int) {
	rank := len(outDims)
	s := rank // the trailing axes [s, rank) are not broadcast
	for s > 0 && srcDims[s-1] == outDims[s-1] {
		s--
	}
	block := 1
	for _, d := range outDims[s:] {
		block *= d
	}
	srcStrides, outStrides := make([]int, rank+1), make([]int, rank+1)
	srcStrides[rank], outStrides[rank] = 1, 1
	for a := rank - 1; a >= 0; a-- {
		srcStrides[a], outStrides[a] = srcStrides[a+1]*srcDims[a], outStrides[a+1]*outDims[a]
	}
	var fill func(a, srcOff, outOff int)
	fill = func(a, srcOff, outOff int) {
		if a == s {
			copy(out[outOff:outOff+block], src[srcOff:srcOff+block])
			return
		}
		if srcDims[a] == outDims[a] {
			for i := range outDims[a] {
				fill(a+1, srcOff+i*srcStrides[a+1], outOff+i*outStrides[a+1])
			}
			return
		}
		fill(a+1, srcOff, outOff)
		n := outStrides[a+1]
		for done := 1; done < outDims[a]; {
			c := min(done, outDims[a]-done)
			copy(out[outOff+done*n:outOff+(done+c)*n], out[outOff:outOff+c*n])
			done += c
		}
	}
	fill(0, 0, 0)
}

// isSortedAxes reports whether the operand's axes map to output axes in increasing order (no
// transposition hidden in the broadcast), which broadcastBlocks assumes.
func isSortedAxes(axes []int) bool {
	for i := 1; i < len(axes); i++ {
		if axes[i] <= axes[i-1] {
			return false
		}
	}
	return true
}

// broadcastAny runs broadcastBlocks for the element types it knows; false for the others.
func broadcastAny(src any, srcDims []int, out any, outDims []int) bool {
	switch s := src.(type) {
	case []float32:
		broadcastBlocks(s, srcDims, out.([]float32), outDims)
	case []float64:
		broadcastBlocks(s, srcDims, out.([]float64), outDims)
	case []int32:
		broadcastBlocks(s, srcDims, out.([]int32), outDims)
	case []int64:
		broadcastBlocks(s, srcDims, out.([]int64), outDims)
	case []bool:
		broadcastBlocks(s, srcDims, out.([]bool), outDims)
	default:
		return false
	}
	return true
}

// permuteAny runs permute on the first n elements for the element types it knows; false for
// the others.
func permuteAny(src any, n int, dims, order []int, dst any) bool {
	switch s := src.(type) {
	case []float32:
		permute(s[:n], dims, order, dst.([]float32)[:n])
	case []float64:
		permute(s[:n], dims, order, dst.([]float64)[:n])
	case []int32:
		permute(s[:n], dims, order, dst.([]int32)[:n])
	case []int64:
		permute(s[:n], dims, order, dst.([]int64)[:n])
	case []bool:
		permute(s[:n], dims, order, dst.([]bool)[:n])
	default:
		return false
	}
	return true
}

// permute writes src (shape dims) to dst with its axes in the given order (dst axis i is src
// axis order[i]), walking dst sequentially; size-1 axes are skipped.
func permute[T any](src []T, dims, order []int, dst []T) {
	rank := len(dims)
	strides := make([]int, rank)
	s := 1
	for a := rank - 1; a >= 0; a-- {
		strides[a] = s
		s *= dims[a]
	}
	var pDims, pStrides []int
	for _, a := range order {
		if dims[a] > 1 {
			pDims, pStrides = append(pDims, dims[a]), append(pStrides, strides[a])
		}
	}
	if len(pDims) == 0 {
		copy(dst, src)
		return
	}
	idx := make([]int, len(pDims))
	last := len(pDims) - 1
	inner, innerStride := pDims[last], pStrides[last]
	off := 0
	for o := 0; o < len(dst); o += inner {
		p := off
		for j := range inner {
			dst[o+j] = src[p]
			p += innerStride
		}
		for ax := last - 1; ax >= 0; ax-- {
			idx[ax]++
			off += pStrides[ax]
			if idx[ax] < pDims[ax] {
				break
			}
			off -= pStrides[ax] * pDims[ax]
			idx[ax] = 0
		}
	}
}
