package simplego

// cachebench patch: a float32 DotGeneral on a register-blocked SIMD kernel.
//
// Upstream's float32 DotGeneral copies both operands into 2^k-square blocks and multiplies them
// with scalar Go code; on the tiny models cachebench runs on the CPU that was half of all time.
// This path packs the operands only when their layout needs it — lhs to [batch, M, K], rhs to
// [batch, K, N], both row-major — and multiplies with the kernel of dotgeneral_f32_simd.go
// (AVX2 + FMA, built with GOEXPERIMENT=simd on amd64). Where that kernel is absent
// (dotF32Kernel == nil) or a dotgeneral_* option forces a version, upstream's code runs.
//
// Every output element is one fused multiply-add chain over k = 0..K-1 in order, whatever the
// position of the element, the number of rows or batches, or how the work is split across
// goroutines: results do not depend on batch size or parallelism.

import (
	"sync"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// dotF32Kernel computes rows [i0, i1) of C[M,N] = A[M,K]·B[K,N] (row-major, C overwritten).
// Nil where no SIMD kernel is built for this machine.
var dotF32Kernel func(a, b, c []float32, i0, i1, K, N int)

// dotF32MinParallelFLOPs is the problem size under which splitting across workers costs more
// than it saves.
const dotF32MinParallelFLOPs = 1 << 20

// execDotGeneralF32 computes the normalized output [batch, lhsCross, rhsCross] into output.
func execDotGeneralF32(backend *Backend, lhs, rhs *Buffer, params *dotGeneralNodeData, output *Buffer) {
	B, M, K, N := params.batchSize, params.lhsCrossSize, params.contractingSize, params.rhsCrossSize
	a, aTmp := dgF32Normalized(backend, lhs, params.lhsBatchAxes, crossAxes(lhs.shape.Rank(), params.lhsContractingAxes, params.lhsBatchAxes), params.lhsContractingAxes)
	b, bTmp := dgF32Normalized(backend, rhs, params.rhsBatchAxes, params.rhsContractingAxes, crossAxes(rhs.shape.Rank(), params.rhsContractingAxes, params.rhsBatchAxes))
	c := output.flat.([]float32)

	// Work units are (batch, block of 4 rows); chunks of units go to the workers.
	blocksPerBatch := (M + 3) / 4
	units := B * blocksPerBatch
	run := func(u0, u1 int) {
		for u := u0; u < u1; {
			bi, blk := u/blocksPerBatch, u%blocksPerBatch
			end := min(blocksPerBatch, blk+(u1-u))
			i0, i1 := 4*blk, min(M, 4*end)
			dotF32Kernel(a[bi*M*K:(bi+1)*M*K], b[bi*K*N:(bi+1)*K*N], c[bi*M*N:(bi+1)*M*N], i0, i1, K, N)
			u += end - blk
		}
	}
	chunks := 1
	if backend.workers.IsEnabled() && 2*B*M*K*N >= dotF32MinParallelFLOPs {
		chunks = backend.workers.MaxParallelism()
		if backend.workers.IsUnlimited() {
			chunks = 4
		}
		chunks = min(chunks, units)
	}
	if chunks <= 1 {
		run(0, units)
	} else {
		var wg sync.WaitGroup
		for ch := 1; ch < chunks; ch++ {
			u0, u1 := units*ch/chunks, units*(ch+1)/chunks
			wg.Add(1)
			if !backend.workers.StartIfAvailable(func() { defer wg.Done(); run(u0, u1) }) {
				run(u0, u1) // no free worker: inline, never waiting on the pool
				wg.Done()
			}
		}
		run(0, units/chunks)
		wg.Wait()
	}
	if aTmp != nil {
		backend.putBuffer(aTmp)
	}
	if bTmp != nil {
		backend.putBuffer(bTmp)
	}
}

// crossAxes lists, in order, the axes that are neither contracting nor batch.
func crossAxes(rank int, contracting, batch []int) []int {
	kind := make([]bool, rank)
	for _, a := range contracting {
		kind[a] = true
	}
	for _, a := range batch {
		kind[a] = true
	}
	out := make([]int, 0, rank)
	for a := range rank {
		if !kind[a] {
			out = append(out, a)
		}
	}
	return out
}

// dgF32Normalized returns the operand's data laid out as [g0, g1, g2] (each group's axes in the
// given order, row-major): the buffer itself when already so, else a packed copy (returned too,
// to give back to the pool).
func dgF32Normalized(backend *Backend, buf *Buffer, g0, g1, g2 []int) ([]float32, *Buffer) {
	order := make([]int, 0, buf.shape.Rank())
	order = append(append(append(order, g0...), g1...), g2...)
	src := buf.flat.([]float32)[:buf.shape.Size()]
	inOrder := true
	for i, a := range order {
		if a != i {
			inOrder = false
			break
		}
	}
	if inOrder {
		return src, nil
	}
	tmp := backend.getBufferForShape(shapes.Make(dtypes.Float32, len(src)))
	dst := tmp.flat.([]float32)[:len(src)]
	permute(src, buf.shape.Dimensions, order, dst)
	return dst, tmp
}

// expF32Kernel and tanhF32Kernel compute out[i] = exp(in[i]) (tanh) in float32; nil where no SIMD
// kernel is built for this machine (unary_f32_simd.go).
var expF32Kernel, tanhF32Kernel func(in, out []float32)

// Float32Kernels names the SIMD float32 kernels in use ("" when none: upstream's code runs).
func Float32Kernels() string {
	if dotF32Kernel == nil {
		return ""
	}
	return "float32 dot, exp, tanh, add, sub, mul, div: avx2+fma"
}
