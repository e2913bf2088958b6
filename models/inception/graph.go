package inception

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// builder carries the weight nodes and the trace outputs while one graph is built.
type builder struct {
	n      *Net
	p      []*Node
	trace  bool
	traces map[string]*Node
}

// graph builds the forward pass: in[0] is the preprocessed input [N, 299, 299, 3], the rest are
// the weights in Net.args order. Outputs: pool3, logits, logits_unbiased, spatial, then
// mixed_6_conv (NCHW) and the traces when the mode asks for them.
func (n *Net) graph(in []*Node, md mode) []*Node {
	b := &builder{n: n, p: in[1:], trace: md.trace, traces: map[string]*Node{}}
	x := in[0]
	x = b.conv(x, "Conv2d_1a_3x3")
	x = b.conv(x, "Conv2d_2a_3x3")
	x = b.conv(x, "Conv2d_2b_3x3")
	x = maxPool3s2(x)
	b.mean("block0_mean", x)
	x = b.conv(x, "Conv2d_3b_1x1")
	x = b.conv(x, "Conv2d_4a_3x3")
	x = maxPool3s2(x)
	b.mean("block1_mean", x)
	var m6conv *Node
	for _, m := range mixed {
		p := m.name + "."
		switch m.kind {
		case "A":
			x = b.blockA(x, p)
		case "B":
			x = b.blockB(x, p)
		case "C":
			var b1 *Node
			x, b1 = b.blockC(x, p)
			if m.name == "Mixed_6d" {
				m6conv = b1
			}
		case "D":
			x = b.blockD(x, p)
		case "E1", "E2":
			x = b.blockE(x, p, m.kind == "E2")
		}
		b.mean("trace."+m.name, x)
		if m.name == "Mixed_6e" {
			b.mean("block2_mean", x)
		}
	}
	N := x.Shape().Dimensions[0]
	pool3 := ReduceMean(x, 1, 2)
	fcW, fcB := b.p[n.fcW], b.p[n.fcW+1]
	unbiased := DotGeneral(pool3, []int{1}, nil, fcW, []int{1}, nil)
	logits := Add(unbiased, Reshape(fcB, 1, NumLogits))
	spatial := Reshape(Slice(m6conv, AxisRange(), AxisRange(), AxisRange(), AxisRange(0, 7)), N, SpatialDim)
	outs := []*Node{pool3, logits, unbiased, spatial}
	if md.mixed6 {
		outs = append(outs, TransposeAllAxes(m6conv, 0, 3, 1, 2))
	}
	if md.trace {
		names, _ := traceOutputs()
		for _, name := range names {
			t, ok := b.traces[name]
			if !ok {
				panic(fmt.Sprintf("inception: internal error: no trace %q in the graph", name))
			}
			outs = append(outs, t)
		}
	}
	return outs
}

// traceOutputs names the trace outputs in graph order, with their widths.
func traceOutputs() ([]string, []int) {
	var names []string
	var widths []int
	for _, c := range archConvs {
		names, widths = append(names, "trace."+c.name), append(widths, c.out)
	}
	mixedOut := map[string]int{"Mixed_5b": 256, "Mixed_5c": 288, "Mixed_5d": 288, "Mixed_6a": 768, "Mixed_6b": 768,
		"Mixed_6c": 768, "Mixed_6d": 768, "Mixed_6e": 768, "Mixed_7a": 1280, "Mixed_7b": 2048, "Mixed_7c": 2048}
	for _, m := range mixed {
		names, widths = append(names, "trace."+m.name), append(widths, mixedOut[m.name])
	}
	names = append(names, "block0_mean", "block1_mean", "block2_mean")
	widths = append(widths, 64, 192, 768)
	return names, widths
}

// mean records the spatial mean of x [N, H, W, C] as a trace output. It sums in float64: the
// backend sums a float32 reduction sequentially, which over a 147×147 map is off by several 1e-6
// relative, as much as the whole network's float32 error.
func (b *builder) mean(name string, x *Node) {
	if b.trace {
		b.traces[name] = ConvertDType(ReduceMean(ConvertDType(x, dtypes.Float64), 1, 2), dtypes.Float32)
	}
}

// conv applies one BasicConv2d (conv, folded BatchNorm, ReLU).
func (b *builder) conv(x *Node, name string) *Node {
	c := archByName[name]
	i := b.n.unit[name]
	y := convBNReLU(x, c, b.p[i], b.p[i+1])
	b.mean("trace."+name, y)
	return y
}

// fused applies a group of 1×1 BasicConv2d that read the same x as one matrix product and
// splits the result; each output column is the same dot product as a separate conv would compute.
func (b *builder) fused(x *Node, names ...string) []*Node {
	head := archByName[names[0]]
	i := b.n.unit[head.name]
	y := convBNReLU(x, head, b.p[i], b.p[i+1])
	outs := make([]*Node, len(names))
	for j, name := range names {
		c := archByName[name]
		outs[j] = Slice(y, AxisRange(), AxisRange(), AxisRange(), AxisRange(c.fusedCol, c.fusedCol+c.out))
		b.mean("trace."+name, outs[j])
	}
	return outs
}

// convBNReLU is relu(im2col(x)·wᵀ + bias) with w [out, kh·kw·in] in (ky, kx, in) column order.
//
// Results do not depend on the batch size on the pure-Go backend: it switches between two matmul
// algorithms with the number of rows, but both add the products of a row in groups of 8 in the
// same order, so they agree bit for bit when K is a multiple of 8. Every K here is, except
// Conv2d_1a's 27, whose product is always big enough (22201 rows per image) for the same one.
func convBNReLU(x *Node, c *conv, w, bias *Node) *Node {
	cols := im2col(x, c.kh, c.kw, c.stride, c.padH, c.padW)
	y := DotGeneral(cols, []int{3}, nil, w, []int{1}, nil)
	out := w.Shape().Dimensions[0]
	y = Add(y, Reshape(bias, 1, 1, 1, out))
	return MaxScalar(y, 0)
}

// im2col gathers each output position's kh×kw×C input patch into the channel axis:
// [N, H, W, C] → [N, Ho, Wo, kh·kw·C], zero padding ph rows and pw columns on each side.
func im2col(x *Node, kh, kw, stride, ph, pw int) *Node {
	if kh == 1 && kw == 1 && stride == 1 && ph == 0 && pw == 0 {
		return x
	}
	x = zeroPad(x, ph, pw)
	d := x.Shape().Dimensions
	H, W := d[1], d[2]
	Ho, Wo := (H-kh)/stride+1, (W-kw)/stride+1
	parts := make([]*Node, 0, kh*kw)
	for ky := range kh {
		for kx := range kw {
			parts = append(parts, Slice(x, AxisRange(),
				AxisRange(ky, ky+(Ho-1)*stride+1).Stride(stride),
				AxisRange(kx, kx+(Wo-1)*stride+1).Stride(stride),
				AxisRange()))
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return Concatenate(parts, 3)
}

// zeroPad pads the spatial axes of an NHWC tensor with zeros by concatenation (the pure-Go
// backend has no Pad op).
func zeroPad(x *Node, ph, pw int) *Node {
	g := x.Graph()
	d := x.Shape().Dimensions
	if ph > 0 {
		z := Zeros(g, shapes.Make(dtypes.Float32, d[0], ph, d[2], d[3]))
		x = Concatenate([]*Node{z, x, z}, 1)
	}
	if pw > 0 {
		d = x.Shape().Dimensions
		z := Zeros(g, shapes.Make(dtypes.Float32, d[0], d[1], pw, d[3]))
		x = Concatenate([]*Node{z, x, z}, 2)
	}
	return x
}

// The pools below are built from strided slices and elementwise ops, separably (rows, then
// columns): the pure-Go backend's ReduceWindow walks a generic index iterator that allocates per
// element and took a quarter of the forward time. Max is exact, so the separable max equals
// the 3×3 one bit for bit; the separable sum only reorders a 9-term float32 sum.

// maxPool3s2 is the 3×3, stride 2, unpadded max pool of the stem and the reduction blocks.
func maxPool3s2(x *Node) *Node {
	return pool3(x, 2, Max)
}

// maxPool3s1 is FIDInceptionE_2's 3×3, stride 1, padding 1 max pool. Its input is a ReLU
// output (≥ 0) and the window always holds its centre, so padding with 0 never wins.
func maxPool3s1(x *Node) *Node {
	return pool3(zeroPad(x, 1, 1), 1, Max)
}

// avgPool3s1 is pytorch-fid's 3×3, stride 1, padding 1 average pool with count_include_pad=False:
// the zero-padded window sum divided by the number of real pixels in the window.
func avgPool3s1(x *Node) *Node {
	d := x.Shape().Dimensions
	H, W := d[1], d[2]
	count := make([]float32, H*W)
	for i := range H {
		for j := range W {
			count[i*W+j] = float32((min(i+1, H-1) - max(i-1, 0) + 1) * (min(j+1, W-1) - max(j-1, 0) + 1))
		}
	}
	sum := pool3(zeroPad(x, 1, 1), 1, Add)
	return Div(sum, ConstTensor(x.Graph(), tensors.FromFlatDataAndDimensions(count, 1, H, W, 1)))
}

// pool3 reduces 3×3 windows of an NHWC tensor with op (Max or Add) at the given stride, no padding.
func pool3(x *Node, stride int, op func(a, b *Node) *Node) *Node {
	for _, axis := range []int{2, 1} {
		n := x.Shape().Dimensions[axis]
		out := (n-3)/stride + 1
		var acc *Node
		for k := range 3 {
			s := SliceAxis(x, axis, AxisRange(k, k+(out-1)*stride+1).Stride(stride))
			if acc == nil {
				acc = s
			} else {
				acc = op(acc, s)
			}
		}
		x = acc
	}
	return x
}

// blockA is FIDInceptionA (Mixed_5b/5c/5d).
func (b *builder) blockA(x *Node, p string) *Node {
	f := b.fused(x, p+"branch1x1", p+"branch5x5_1", p+"branch3x3dbl_1")
	b5 := b.conv(f[1], p+"branch5x5_2")
	b3 := b.conv(b.conv(f[2], p+"branch3x3dbl_2"), p+"branch3x3dbl_3")
	bp := b.conv(avgPool3s1(x), p+"branch_pool")
	return Concatenate([]*Node{f[0], b5, b3, bp}, 3)
}

// blockB is torchvision's InceptionB (Mixed_6a).
func (b *builder) blockB(x *Node, p string) *Node {
	b3 := b.conv(x, p+"branch3x3")
	d := b.conv(b.conv(b.conv(x, p+"branch3x3dbl_1"), p+"branch3x3dbl_2"), p+"branch3x3dbl_3")
	return Concatenate([]*Node{b3, d, maxPool3s2(x)}, 3)
}

// blockC is FIDInceptionC (Mixed_6b–6e); it also returns branch1x1's output (sFID's mixed_6/conv).
func (b *builder) blockC(x *Node, p string) (*Node, *Node) {
	f := b.fused(x, p+"branch1x1", p+"branch7x7_1", p+"branch7x7dbl_1")
	b7 := b.conv(b.conv(f[1], p+"branch7x7_2"), p+"branch7x7_3")
	d := f[2]
	for _, s := range []string{"2", "3", "4", "5"} {
		d = b.conv(d, p+"branch7x7dbl_"+s)
	}
	bp := b.conv(avgPool3s1(x), p+"branch_pool")
	return Concatenate([]*Node{f[0], b7, d, bp}, 3), f[0]
}

// blockD is torchvision's InceptionD (Mixed_7a).
func (b *builder) blockD(x *Node, p string) *Node {
	f := b.fused(x, p+"branch3x3_1", p+"branch7x7x3_1")
	b3 := b.conv(f[0], p+"branch3x3_2")
	b7 := f[1]
	for _, s := range []string{"2", "3", "4"} {
		b7 = b.conv(b7, p+"branch7x7x3_"+s)
	}
	return Concatenate([]*Node{b3, b7, maxPool3s2(x)}, 3)
}

// blockE is FIDInceptionE_1 (Mixed_7b, average pool branch) or FIDInceptionE_2 (Mixed_7c, max pool).
func (b *builder) blockE(x *Node, p string, maxPool bool) *Node {
	f := b.fused(x, p+"branch1x1", p+"branch3x3_1", p+"branch3x3dbl_1")
	b3 := Concatenate([]*Node{b.conv(f[1], p+"branch3x3_2a"), b.conv(f[1], p+"branch3x3_2b")}, 3)
	d := b.conv(f[2], p+"branch3x3dbl_2")
	bd := Concatenate([]*Node{b.conv(d, p+"branch3x3dbl_3a"), b.conv(d, p+"branch3x3dbl_3b")}, 3)
	var pooled *Node
	if maxPool {
		pooled = maxPool3s1(x)
	} else {
		pooled = avgPool3s1(x)
	}
	bp := b.conv(pooled, p+"branch_pool")
	return Concatenate([]*Node{f[0], b3, bd, bp}, 3)
}
