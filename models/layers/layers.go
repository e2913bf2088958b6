// Package layers holds the graph pieces the transformer models share (DiT, PixArt-α): linear
// layers, the affine-free LayerNorm, adaLN modulation, softmax, GELU-tanh, the sinusoidal
// timestep features and the 2-D sin-cos position table, each written to match the PyTorch
// reference op for op, and the explicit broadcasts the pure-Go backend needs to stay fast.
package layers

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph"
)

// FreqEmbedSize is the width of the sinusoidal timestep features (fixed in DiT and PixArt-α).
const FreqEmbedSize = 256

// Linear is y = x·W + b with W stored [in, out] (transposed from PyTorch at load time).
func Linear(x, w, b *Node) *Node {
	y := MatMul(x, w)
	return Add(y, ExpandTo(ExpandLeftToRank(b, y.Rank()), y))
}

// ExpandTo broadcasts x to the shape of like explicitly, so that the binary op that follows sees
// equal shapes: the pure-Go backend's binary ops walk a per-element index iterator whenever
// shapes differ, while its float32 broadcast is block copies (third_party/README.md). XLA fuses
// either form.
func ExpandTo(x, like *Node) *Node {
	return BroadcastToDims(x, like.Shape().Dimensions...)
}

// SoftmaxLast over the last axis is GoMLX's Softmax (max-shifted exp over its sum), op for op, with
// the broadcasts explicit (see ExpandTo).
func SoftmaxLast(x *Node) *Node {
	e := Exp(Sub(x, ExpandTo(ReduceAndKeep(x, ReduceMax, -1), x)))
	return Div(e, ExpandTo(ReduceAndKeep(e, ReduceSum, -1), e))
}

// GeluTanh is GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))); x³ is
// two products because the pure-Go backend's generic power is several times slower.
func GeluTanh(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(Mul(x, x), x), 0.044715)), math.Sqrt(2/math.Pi))
	return Mul(x, MulScalar(OnePlus(Tanh(inner)), 0.5))
}

// Modulate is x·(1+scale) + shift with shift and scale [B, D] broadcast over tokens.
func Modulate(x, shift, scale *Node) *Node {
	return Add(Mul(x, ExpandTo(OnePlus(InsertAxes(scale, 1)), x)), ExpandTo(InsertAxes(shift, 1), x))
}

// LayerNorm has no affine parameters, eps 1e-6 and the biased variance, as DiT and PixArt-α.
func LayerNorm(x *Node) *Node {
	xc := Sub(x, ExpandTo(ReduceAndKeep(x, ReduceMean, -1), x))
	return Mul(xc, ExpandTo(Rsqrt(AddScalar(ReduceAndKeep(Square(xc), ReduceMean, -1), 1e-6)), xc))
}

// TimestepFeatures computes the references' sinusoidal features (DiT, PixArt-α, the LDM UNet)
// in float32 arithmetic: half = dim/2, f_k = exp(−ln(10000)·k/half), features [cos(t·f), sin(t·f)]
// (cos first; an odd dim gets a zero last column). t may be fractional, as DPM-Solver's model
// times are.
func TimestepFeatures(t []float64, dim int) []float32 {
	half := dim / 2
	negLog := float32(-math.Log(10000))
	freqs := make([]float32, half)
	for k := range freqs {
		freqs[k] = float32(math.Exp(float64(negLog * float32(k) / float32(half))))
	}
	out := make([]float32, len(t)*dim)
	for b, tv := range t {
		tf := float32(tv)
		for k, f := range freqs {
			a := float64(tf * f)
			out[b*dim+k] = float32(math.Cos(a))
			out[b*dim+half+k] = float32(math.Sin(a))
		}
	}
	return out
}

// PosEmbed is the fixed 2-D sin-cos table [gridH·gridW, D] of DiT and PixArt-α (computed in
// float64 from float32 positions, stored float32): channels [0, D/2) encode the grid column,
// [D/2, D) the row, each half [sin | cos] with ω_k = 10000^(−k/(D/4)). A position is
// index / (grid/base) / scale in float32, PixArt-α's `lewei_scale` and `base_size`; DiT's is
// the index (base = grid, scale 1).
func PosEmbed(hidden, gridH, gridW int, base, scale float64) []float32 {
	q := hidden / 4
	pos := func(i, grid int) float64 {
		return float64(float32(float32(i)/float32(float64(grid)/base)) / float32(scale))
	}
	out := make([]float32, gridH*gridW*hidden)
	for i := range gridH {
		for j := range gridW {
			row := out[(i*gridW+j)*hidden:]
			pi, pj := pos(i, gridH), pos(j, gridW)
			for k := range q {
				omega := 1 / math.Pow(10000, float64(k)/float64(q))
				row[k] = float32(math.Sin(pj * omega))
				row[q+k] = float32(math.Cos(pj * omega))
				row[2*q+k] = float32(math.Sin(pi * omega))
				row[3*q+k] = float32(math.Cos(pi * omega))
			}
		}
	}
	return out
}
