//go:build goexperiment.simd && amd64

package simplego

// cachebench patch: float32 Add, Sub, Mul and Div of equal shapes, or by a scalar right-hand
// side, on 8 lanes. The same IEEE operations as upstream's scalar loops, so the same bits.

import "simd/archsimd"

func init() {
	if archsimd.X86.AVX2() {
		f32Binary = f32BinaryAVX2
	}
}

func f32BinaryAVX2(op f32BinaryOp, lhs, rhs, output any) bool {
	l, ok := lhs.([]float32)
	if !ok {
		return false
	}
	r, out := rhs.([]float32), output.([]float32)
	defer archsimd.ClearAVXUpperBits()
	n := len(l)
	out = out[:n]
	if len(r) == 1 {
		c := archsimd.BroadcastFloat32x8(r[0])
		i := 0
		for ; i+8 <= n; i += 8 {
			f32Op(op, archsimd.LoadFloat32x8Slice(l[i:i+8]), c).StoreSlice(out[i : i+8])
		}
		if i < n {
			f32Op(op, archsimd.LoadFloat32x8SlicePart(l[i:n]), c).StoreSlicePart(out[i:n])
		}
		return true
	}
	r = r[:n]
	i := 0
	for ; i+8 <= n; i += 8 {
		f32Op(op, archsimd.LoadFloat32x8Slice(l[i:i+8]), archsimd.LoadFloat32x8Slice(r[i:i+8])).StoreSlice(out[i : i+8])
	}
	if i < n {
		f32Op(op, archsimd.LoadFloat32x8SlicePart(l[i:n]), archsimd.LoadFloat32x8SlicePart(r[i:n])).StoreSlicePart(out[i:n])
	}
	return true
}

func f32Op(op f32BinaryOp, a, b archsimd.Float32x8) archsimd.Float32x8 {
	switch op {
	case f32Add:
		return a.Add(b)
	case f32Sub:
		return a.Sub(b)
	case f32Mul:
		return a.Mul(b)
	default:
		return a.Div(b)
	}
}
