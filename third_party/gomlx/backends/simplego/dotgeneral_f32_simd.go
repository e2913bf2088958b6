//go:build goexperiment.simd && amd64

package simplego

// cachebench patch: the AVX2 + FMA float32 matrix kernel (see dotgeneral_f32.go).

import "simd/archsimd"

func init() {
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		dotF32Kernel = dotF32AVX2
	}
}

// dotF32AVX2 computes rows [i0, i1) of C[M,N] = A[M,K]·B[K,N]: columns in blocks of 16 (two
// 8-lane vectors), then one vector, then a masked part; rows in blocks of 4, then one by one.
// Each element is acc = fma(a[i,k], b[k,j], acc) for k = 0..K-1 in every one of these paths.
func dotF32AVX2(a, b, c []float32, i0, i1, K, N int) {
	// Dirty upper halves of the vector registers slow the SSE code that runs next (math.Exp
	// took 2.7× longer after this kernel, measured).
	defer archsimd.ClearAVXUpperBits()
	j := 0
	for ; j+16 <= N; j += 16 {
		i := i0
		for ; i+4 <= i1; i += 4 {
			f32Block4x16(a[i*K:(i+4)*K], b, c[i*N:], K, N, j)
		}
		for ; i < i1; i++ {
			f32Block1x16(a[i*K:(i+1)*K], b, c[i*N:], K, N, j)
		}
	}
	for ; j < N; j += 8 {
		i := i0
		for ; i+4 <= i1; i += 4 {
			f32Block4x8(a[i*K:(i+4)*K], b, c[i*N:], K, N, j)
		}
		for ; i < i1; i++ {
			f32Block1x8(a[i*K:(i+1)*K], b, c[i*N:], K, N, j)
		}
	}
}

func f32Block4x16(a, b, c []float32, K, N, j int) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x8
	a0, a1, a2, a3 := a[:K], a[K:2*K], a[2*K:3*K], a[3*K:4*K]
	for k := range K {
		row := b[k*N+j : k*N+j+16]
		b0 := archsimd.LoadFloat32x8Slice(row[:8])
		b1 := archsimd.LoadFloat32x8Slice(row[8:])
		v := archsimd.BroadcastFloat32x8(a0[k])
		c00, c01 = v.MulAdd(b0, c00), v.MulAdd(b1, c01)
		v = archsimd.BroadcastFloat32x8(a1[k])
		c10, c11 = v.MulAdd(b0, c10), v.MulAdd(b1, c11)
		v = archsimd.BroadcastFloat32x8(a2[k])
		c20, c21 = v.MulAdd(b0, c20), v.MulAdd(b1, c21)
		v = archsimd.BroadcastFloat32x8(a3[k])
		c30, c31 = v.MulAdd(b0, c30), v.MulAdd(b1, c31)
	}
	c00.StoreSlice(c[j:])
	c01.StoreSlice(c[j+8:])
	c10.StoreSlice(c[N+j:])
	c11.StoreSlice(c[N+j+8:])
	c20.StoreSlice(c[2*N+j:])
	c21.StoreSlice(c[2*N+j+8:])
	c30.StoreSlice(c[3*N+j:])
	c31.StoreSlice(c[3*N+j+8:])
}

func f32Block1x16(a, b, c []float32, K, N, j int) {
	var c00, c01 archsimd.Float32x8
	for k := range K {
		row := b[k*N+j : k*N+j+16]
		v := archsimd.BroadcastFloat32x8(a[k])
		c00 = v.MulAdd(archsimd.LoadFloat32x8Slice(row[:8]), c00)
		c01 = v.MulAdd(archsimd.LoadFloat32x8Slice(row[8:]), c01)
	}
	c00.StoreSlice(c[j:])
	c01.StoreSlice(c[j+8:])
}

// f32Block4x8 covers columns j..min(j+8, N): a full vector, or a masked part at the edge.
func f32Block4x8(a, b, c []float32, K, N, j int) {
	var c0, c1, c2, c3 archsimd.Float32x8
	a0, a1, a2, a3 := a[:K], a[K:2*K], a[2*K:3*K], a[3*K:4*K]
	w := min(8, N-j)
	for k := range K {
		bv := archsimd.LoadFloat32x8SlicePart(b[k*N+j : k*N+j+w])
		c0 = archsimd.BroadcastFloat32x8(a0[k]).MulAdd(bv, c0)
		c1 = archsimd.BroadcastFloat32x8(a1[k]).MulAdd(bv, c1)
		c2 = archsimd.BroadcastFloat32x8(a2[k]).MulAdd(bv, c2)
		c3 = archsimd.BroadcastFloat32x8(a3[k]).MulAdd(bv, c3)
	}
	c0.StoreSlicePart(c[j : j+w])
	c1.StoreSlicePart(c[N+j : N+j+w])
	c2.StoreSlicePart(c[2*N+j : 2*N+j+w])
	c3.StoreSlicePart(c[3*N+j : 3*N+j+w])
}

func f32Block1x8(a, b, c []float32, K, N, j int) {
	var c0 archsimd.Float32x8
	w := min(8, N-j)
	for k := range K {
		c0 = archsimd.BroadcastFloat32x8(a[k]).MulAdd(archsimd.LoadFloat32x8SlicePart(b[k*N+j:k*N+j+w]), c0)
	}
	c0.StoreSlicePart(c[j : j+w])
}
