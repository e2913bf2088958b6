package dit

import (
	"fmt"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
)

// blockMatmulFLOPs counts 2·MACs of one block's matrix products (adaLN, qkv, q·kᵀ, probs·v, proj,
// fc1, fc2); elementwise work is excluded so the figure compares with a plain matmul rate.
func blockMatmulFLOPs(c Config, B int) float64 {
	N, D, H := float64(c.Tokens()), float64(c.Hidden), float64(c.MLPHidden())
	b := float64(B)
	return 2 * (b*D*6*D + b*N*D*3*D + 2*b*N*N*D + b*N*D*D + 2*b*N*D*H)
}

// BenchmarkBlock reports one DiT block's forward time and GFLOP/s next to the backend's plain
// matmul rate on the same shapes (DiT-S width, 256 tokens). Compare the two rates as a ratio.
func BenchmarkBlock(b *testing.B) {
	c := Config{InputSize: 32, PatchSize: 2, InChannels: 4, Hidden: 384, Depth: 1, Heads: 6, MLPRatio: 4, NumClasses: 10, LearnSigma: true}
	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(be, c, RandomWeights(c, 1))
	if err != nil {
		b.Fatal(err)
	}
	for _, B := range []int{1, 2, 8} {
		x := tensors.FromFlatDataAndDimensions(make([]float32, B*c.Tokens()*c.Hidden), B, c.Tokens(), c.Hidden)
		cond := tensors.FromFlatDataAndDimensions(make([]float32, B*c.Hidden), B, c.Hidden)
		plan := hook.FullPlan(c.Layout())
		flops := blockMatmulFLOPs(c, B)
		// The executor consumes its input stream: each run gets a copy made on the device.
		copyX := m.ex.Family("bench/copy", func(in []*Node) []*Node { return []*Node{Add(in[0], ZerosLike(in[0]))} })
		run := func() {
			out, _ := m.ex.Blocks(copyX.Run(x)[0], []*tensors.Tensor{cond}, plan, Options{})
			out.MustFinalizeAll()
		}
		b.Run(fmt.Sprintf("block/B=%d", B), func(b *testing.B) {
			run() // compile
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		// The same matrix products alone: x·Wqkv, x·Wproj, x·Wfc1, h·Wfc2, c·Wada and the two
		// attention products, as one graph.
		D, Hd := c.Hidden, c.MLPHidden()
		mm := MustNewExec(be, func(in []*Node) []*Node {
			x, c, wqkv, wproj, wfc1, wfc2, wada := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
			q := Slice(MatMul(x, wqkv), AxisRange(), AxisRange(), AxisRange(0, D))
			s := Einsum("bqd,bkd->bqk", q, x)
			o := Einsum("bqk,bkd->bqd", s, x)
			return []*Node{ReduceAllSum(MatMul(o, wproj)), ReduceAllSum(MatMul(MatMul(x, wfc1), wfc2)), ReduceAllSum(MatMul(c, wada))}
		})
		w := func(r, cc int) *tensors.Tensor {
			return tensors.FromFlatDataAndDimensions(make([]float32, r*cc), r, cc)
		}
		args := []any{x, cond, w(D, 3*D), w(D, D), w(D, Hd), w(Hd, D), w(D, 6*D)}
		b.Run(fmt.Sprintf("matmul/B=%d", B), func(b *testing.B) {
			for _, t := range mm.MustExec(args...) {
				t.MustFinalizeAll()
			}
			b.ResetTimer()
			for b.Loop() {
				for _, t := range mm.MustExec(args...) {
					t.MustFinalizeAll()
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
