//go:build goexperiment.simd && amd64

package simplego

// cachebench patch: float32 Exp and Tanh on 8 lanes (AVX2 + FMA), in float32 arithmetic.
//
// Upstream computes them one element at a time in float64 (math.Exp, math.Tanh); on the tiny
// DiT the softmax's exp and the GELU's tanh were then 39% of all time. The algorithms are
// Cephes' expf and tanhf (S. L. Moshier), whose float32 error is about 1 ulp; the tail of a
// slice goes through the same lanes (masked load), so an element's value does not depend on
// its position.

import "simd/archsimd"

func init() {
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		expF32Kernel = expF32AVX2
		tanhF32Kernel = tanhF32AVX2
	}
}

const (
	expF32Max = 88.72283905206835    // log(MaxFloat32): above, +Inf
	expF32Min = -103.972077083991796 // log(smallest denormal): below, 0
)

// expF32x8 is Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, exp(r) by a degree-7 polynomial, then
// scaled by 2^n in two halves so that n down to −150 (denormal results) stays exact.
func expF32x8(x archsimd.Float32x8) archsimd.Float32x8 {
	xc := x.Max(archsimd.BroadcastFloat32x8(expF32Min)).Min(archsimd.BroadcastFloat32x8(expF32Max))
	n := xc.Mul(archsimd.BroadcastFloat32x8(1.44269504088896341)).RoundToEven()
	r := n.MulAdd(archsimd.BroadcastFloat32x8(-0.693359375), xc)
	r = n.MulAdd(archsimd.BroadcastFloat32x8(2.12194440e-4), r)
	p := r.MulAdd(archsimd.BroadcastFloat32x8(1.9875691500e-4), archsimd.BroadcastFloat32x8(1.3981999507e-3))
	p = r.MulAdd(p, archsimd.BroadcastFloat32x8(8.3334519073e-3))
	p = r.MulAdd(p, archsimd.BroadcastFloat32x8(4.1665795894e-2))
	p = r.MulAdd(p, archsimd.BroadcastFloat32x8(1.6666665459e-1))
	p = r.MulAdd(p, archsimd.BroadcastFloat32x8(5.0000001201e-1))
	y := p.MulAdd(r.Mul(r), r.Add(archsimd.BroadcastFloat32x8(1)))
	ni := n.ConvertToInt32()
	n1 := ni.ShiftAllRight(1) // arithmetic: floor(n/2)
	n2 := ni.Sub(n1)
	bias := archsimd.BroadcastInt32x8(127)
	y = y.Mul(n1.Add(bias).ShiftAllLeft(23).AsFloat32x8()).Mul(n2.Add(bias).ShiftAllLeft(23).AsFloat32x8())
	y = archsimd.BroadcastFloat32x8(0).Merge(y, x.Less(archsimd.BroadcastFloat32x8(expF32Min)))
	y = archsimd.BroadcastFloat32x8(float32Inf).Merge(y, x.Greater(archsimd.BroadcastFloat32x8(expF32Max)))
	return x.Merge(y, x.IsNaN())
}

var float32Inf = func() float32 { var z float32; return 1 / z }()

// tanhF32x8 is Cephes tanhf: an odd polynomial below |x| = 0.625, else 1 − 2/(exp(2|x|) + 1).
func tanhF32x8(x archsimd.Float32x8) archsimd.Float32x8 {
	a := x.AsInt32x8().And(archsimd.BroadcastInt32x8(0x7fffffff)).AsFloat32x8()
	z := x.Mul(x)
	p := z.MulAdd(archsimd.BroadcastFloat32x8(-5.70498872745e-3), archsimd.BroadcastFloat32x8(2.06390887954e-2))
	p = z.MulAdd(p, archsimd.BroadcastFloat32x8(-5.37397155531e-2))
	p = z.MulAdd(p, archsimd.BroadcastFloat32x8(1.33314422036e-1))
	p = z.MulAdd(p, archsimd.BroadcastFloat32x8(-3.33332819422e-1))
	small := p.Mul(z).MulAdd(x, x)
	one := archsimd.BroadcastFloat32x8(1)
	e := expF32x8(a.Add(a))
	big := one.Sub(archsimd.BroadcastFloat32x8(2).Div(e.Add(one)))
	big = archsimd.BroadcastFloat32x8(0).Sub(big).Merge(big, x.Less(archsimd.BroadcastFloat32x8(0)))
	return small.Merge(big, a.Less(archsimd.BroadcastFloat32x8(0.625)))
}

func expF32AVX2(in, out []float32) {
	defer archsimd.ClearAVXUpperBits()
	n, i := len(in), 0
	for ; i+8 <= n; i += 8 {
		expF32x8(archsimd.LoadFloat32x8Slice(in[i : i+8])).StoreSlice(out[i : i+8])
	}
	if i < n {
		expF32x8(archsimd.LoadFloat32x8SlicePart(in[i:n])).StoreSlicePart(out[i:n])
	}
}

func tanhF32AVX2(in, out []float32) {
	defer archsimd.ClearAVXUpperBits()
	n, i := len(in), 0
	for ; i+8 <= n; i += 8 {
		tanhF32x8(archsimd.LoadFloat32x8Slice(in[i : i+8])).StoreSlice(out[i : i+8])
	}
	if i < n {
		tanhF32x8(archsimd.LoadFloat32x8SlicePart(in[i:n])).StoreSlicePart(out[i:n])
	}
}
