package inception

// conv is one BasicConv2d of the network (convolution without bias, BatchNorm, ReLU) as
// torchvision's Inception3 declares it; the key prefix is its name.
type conv struct {
	name             string
	in, out          int
	kh, kw           int
	stride           int
	padH, padW       int
	outH, outW       int // spatial size of the output for a 299×299 input (filled in by arch)
	inH, inW         int
	fusedWith        string // first conv of a group of 1×1 convs sharing one input, computed as one matmul
	fusedCol, fusedN int    // column offset inside the group, and the group's total width
}

// mixed names the eleven mixed blocks in forward order with their torchvision block type.
var mixed = []struct{ name, kind string }{
	{"Mixed_5b", "A"}, {"Mixed_5c", "A"}, {"Mixed_5d", "A"},
	{"Mixed_6a", "B"},
	{"Mixed_6b", "C"}, {"Mixed_6c", "C"}, {"Mixed_6d", "C"}, {"Mixed_6e", "C"},
	{"Mixed_7a", "D"},
	{"Mixed_7b", "E1"}, {"Mixed_7c", "E2"},
}

// The network's fixed dimensions.
const (
	// InputSize is the side of the square image the network sees after resizing.
	InputSize = 299
	// Pool3Dim is the width of the FID feature (global average of Mixed_7c).
	Pool3Dim = 2048
	// NumLogits is the width of the classifier output (1008 classes of the 2015 TF graph).
	NumLogits = 1008
	// SpatialDim is the width of the sFID feature: 7 channels × 17 × 17 of Mixed_6d.branch1x1.
	SpatialDim = 7 * 17 * 17
	// BNEps is the BatchNorm epsilon of pytorch-fid's network (TF's value, not PyTorch's 1e-5).
	BNEps = 0.001
)

// archConvs lists every BasicConv2d in forward order, with the spatial sizes they see for a
// 299×299 input. Computed once; callers must not modify it.
var archConvs, archByName = buildArch()

func buildArch() ([]*conv, map[string]*conv) {
	var list []*conv
	h, w := InputSize, InputSize
	add := func(name string, in, out, kh, kw, stride, ph, pw int) *conv {
		c := &conv{name: name, in: in, out: out, kh: kh, kw: kw, stride: stride, padH: ph, padW: pw, inH: h, inW: w}
		c.outH = (h+2*ph-kh)/stride + 1
		c.outW = (w+2*pw-kw)/stride + 1
		list = append(list, c)
		return c
	}
	// seq adds a chain of convs, each one taking the previous one's output size.
	seq := func(name string, in, out, kh, kw, stride, ph, pw int) {
		c := add(name, in, out, kh, kw, stride, ph, pw)
		h, w = c.outH, c.outW
	}
	pool := func() { h, w = (h-3)/2+1, (w-3)/2+1 }
	fuse := func(names ...string) {
		total := 0
		for _, c := range list {
			for _, n := range names {
				if c.name == n {
					c.fusedWith, c.fusedCol = names[0], total
					total += c.out
				}
			}
		}
		for _, c := range list {
			if c.fusedWith == names[0] {
				c.fusedN = total
			}
		}
	}
	seq("Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0)
	seq("Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0)
	seq("Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1)
	pool()
	seq("Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0)
	seq("Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0)
	pool()
	in := 192
	for _, m := range mixed {
		p := m.name + "."
		// Branch convs on the block input keep (h, w); the reducing ones change it at the end.
		switch m.kind {
		case "A":
			poolF := 64
			if m.name == "Mixed_5b" {
				poolF = 32
			}
			add(p+"branch1x1", in, 64, 1, 1, 1, 0, 0)
			add(p+"branch5x5_1", in, 48, 1, 1, 1, 0, 0)
			add(p+"branch5x5_2", 48, 64, 5, 5, 1, 2, 2)
			add(p+"branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0)
			add(p+"branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
			add(p+"branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1)
			add(p+"branch_pool", in, poolF, 1, 1, 1, 0, 0)
			fuse(p+"branch1x1", p+"branch5x5_1", p+"branch3x3dbl_1")
			in = 64 + 64 + 96 + poolF
		case "B":
			add(p+"branch3x3", in, 384, 3, 3, 2, 0, 0)
			add(p+"branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0)
			add(p+"branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
			// The last conv sees the full-size map and halves it.
			add(p+"branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0)
			in = 384 + 96 + in
			pool()
		case "C":
			c7 := map[string]int{"Mixed_6b": 128, "Mixed_6c": 160, "Mixed_6d": 160, "Mixed_6e": 192}[m.name]
			add(p+"branch1x1", in, 192, 1, 1, 1, 0, 0)
			add(p+"branch7x7_1", in, c7, 1, 1, 1, 0, 0)
			add(p+"branch7x7_2", c7, c7, 1, 7, 1, 0, 3)
			add(p+"branch7x7_3", c7, 192, 7, 1, 1, 3, 0)
			add(p+"branch7x7dbl_1", in, c7, 1, 1, 1, 0, 0)
			add(p+"branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0)
			add(p+"branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3)
			add(p+"branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0)
			add(p+"branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)
			add(p+"branch_pool", in, 192, 1, 1, 1, 0, 0)
			fuse(p+"branch1x1", p+"branch7x7_1", p+"branch7x7dbl_1")
			in = 4 * 192
		case "D":
			add(p+"branch3x3_1", in, 192, 1, 1, 1, 0, 0)
			add(p+"branch3x3_2", 192, 320, 3, 3, 2, 0, 0)
			add(p+"branch7x7x3_1", in, 192, 1, 1, 1, 0, 0)
			add(p+"branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3)
			add(p+"branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0)
			add(p+"branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0)
			fuse(p+"branch3x3_1", p+"branch7x7x3_1")
			in = 320 + 192 + in
			pool()
		case "E1", "E2":
			add(p+"branch1x1", in, 320, 1, 1, 1, 0, 0)
			add(p+"branch3x3_1", in, 384, 1, 1, 1, 0, 0)
			add(p+"branch3x3_2a", 384, 384, 1, 3, 1, 0, 1)
			add(p+"branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)
			add(p+"branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0)
			add(p+"branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1)
			add(p+"branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1)
			add(p+"branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)
			add(p+"branch_pool", in, 192, 1, 1, 1, 0, 0)
			fuse(p+"branch1x1", p+"branch3x3_1", p+"branch3x3dbl_1")
			in = 320 + 2*384 + 2*384 + 192
		}
	}
	byName := make(map[string]*conv, len(list))
	for _, c := range list {
		byName[c.name] = c
	}
	return list, byName
}

// ExpectedShapes lists every state-dict key of pytorch-fid's FID Inception (the keys of
// pt_inception-2015-12-05-6726825d.pth) with its PyTorch-layout shape; the
// `*.bn.num_batches_tracked` scalars are left out because the network does not use them.
func ExpectedShapes() map[string][]int {
	m := make(map[string][]int, 5*len(archConvs)+2)
	for _, c := range archConvs {
		m[c.name+".conv.weight"] = []int{c.out, c.in, c.kh, c.kw}
		for _, s := range []string{"weight", "bias", "running_mean", "running_var"} {
			m[c.name+".bn."+s] = []int{c.out}
		}
	}
	m["fc.weight"] = []int{NumLogits, Pool3Dim}
	m["fc.bias"] = []int{NumLogits}
	return m
}

// ConvNames lists the 94 BasicConv2d modules in forward order (the `trace.<name>` goldens).
func ConvNames() []string {
	names := make([]string, len(archConvs))
	for i, c := range archConvs {
		names[i] = c.name
	}
	return names
}

// MixedNames lists the eleven mixed blocks in forward order (Mixed_5b … Mixed_7c).
func MixedNames() []string {
	names := make([]string, len(mixed))
	for i, m := range mixed {
		names[i] = m.name
	}
	return names
}

// FLOPsPerImage counts the floating-point operations of one 299×299 forward pass: 2 per
// multiply-add of every convolution and of the classifier (the BatchNorm, which is folded into
// the convolutions, pools, ReLUs and resizing are left out; they add well under 1%).
func FLOPsPerImage() int64 {
	var macs int64
	for _, c := range archConvs {
		macs += int64(c.outH) * int64(c.outW) * int64(c.out) * int64(c.in) * int64(c.kh) * int64(c.kw)
	}
	macs += Pool3Dim * NumLogits
	return 2 * macs
}
