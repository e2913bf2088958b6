package gx

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// Im2Col3 gathers each output position's 3×3 neighbourhood of a zero-padded (1 px) NHWC float32
// tensor into the channel axis, in (ky, kx, c) order, at the given stride: [N, H, W, C] →
// [N, Ho, Wo, 9·C] with Ho = (H−1)/stride + 1. A 3×3 convolution is then one matrix product,
// which the pure-Go backend runs several times faster than its convolution (it has no Pad op
// either, so the padding is a concatenation).
func Im2Col3(x *Node, stride int) *Node {
	g := x.Graph()
	d := x.Shape().Dimensions
	N, H, W, C := d[0], d[1], d[2], d[3]
	zr := Zeros(g, shapes.Make(dtypes.Float32, N, 1, W, C))
	x = Concatenate([]*Node{zr, x, zr}, 1)
	zc := Zeros(g, shapes.Make(dtypes.Float32, N, H+2, 1, C))
	x = Concatenate([]*Node{zc, x, zc}, 2)
	Ho, Wo := (H-1)/stride+1, (W-1)/stride+1
	parts := make([]*Node, 0, 9)
	for ky := range 3 {
		for kx := range 3 {
			rows, cols := AxisRange(ky, ky+stride*(Ho-1)+1), AxisRange(kx, kx+stride*(Wo-1)+1)
			if stride > 1 {
				rows, cols = rows.Stride(stride), cols.Stride(stride)
			}
			parts = append(parts, Slice(x, AxisRange(), rows, cols, AxisRange()))
		}
	}
	return Concatenate(parts, 3)
}
