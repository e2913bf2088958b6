package simplego

// cachebench patch: BroadcastInDim by block copies (float32, float64, int32, int64, bool). Upstream walks a per-element
// index iterator; here the trailing axes the operand shares with the output are copied as one
// contiguous block, and a broadcast axis is filled by copying the first slice it produced.
// Same values, bit for bit (a broadcast only copies).

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
