// Package vae is the decoder of Stable Diffusion v1's AutoencoderKL (also sd-vae-ft-ema and
// sd-vae-ft-mse), written to reproduce the CompVis ldm Decoder exactly (golden test:
// testdata/sd-vae). It turns the latents a sampler returns into images:
//
//	latent [B,4,h,w] ──×1/0.18215 (decode_first_stage)──► z
//	z ──post_quant_conv 1×1──► conv_in 3×3 ──► mid: ResBlock → AttnBlock → ResBlock
//	for level i = L−1 … 0 (lowest resolution first):
//	    num_res_blocks+1 × ResBlock (→ AttnBlock where the level has one)
//	    i ≠ 0: nearest ×2 upsample → conv 3×3
//	norm_out → swish → conv_out 3×3 ──► image [B,3,h·2^(L−1),w·2^(L−1)] (about [−1, 1], no tanh)
//
//	ResBlock(x)  = shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x))))))   shortcut: 1×1 conv when channels change
//	AttnBlock(x) = x + proj_out(softmax(q·kᵀ·C^−½)·v),  q, k, v = 1×1 convs of norm(x), one head over all h·w positions
//
// Every norm is GroupNorm(32 groups, eps 1e-6, affine). The architecture is read off the weights
// (weights.go), in the LDM or the diffusers key layout.
//
// The graph works in NHWC and computes each 3×3 convolution as im2col and one matrix product on
// the pure-Go backend (its convolution is a scalar loop), or with the backend's convolution
// elsewhere (XLA); both are ordinary graph ops and give the same results within float32 rounding.
package vae

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// ScaleFactor is Stable Diffusion v1's latent scale: the sampler's latent is z·ScaleFactor.
const ScaleFactor = 0.18215

// Groups and Eps are every GroupNorm's settings.
const (
	Groups = 32
	Eps    = 1e-6
)

// DefaultBatchSize is the number of latents per decoder pass when Options.BatchSize is 0. The
// real SD decoder at 256×256 peaked at 5.3 GB resident and took 85 s per image on the pure-Go
// backend (2 cores), so one at a time is the safe default there; on a GPU pass more.
const DefaultBatchSize = 1

// Config is the architecture of one decoder (ldm's ddconfig, as far as the decoder uses it).
type Config struct {
	EmbedDim     int    // latent channels (post_quant_conv input; embed_dim)
	ZChannels    int    // z_channels (conv_in input)
	Channels     []int  // per level, level 0 = full resolution: ch·ch_mult[i]
	NumResBlocks int    // each level runs NumResBlocks+1 ResBlocks
	OutChannels  int    // out_ch
	LevelAttn    []bool // level i has an AttnBlock after each ResBlock (attn_resolutions)
	MidAttn      bool   // the mid block's AttnBlock (always in SD)
}

// Levels is the number of resolution levels (len ch_mult).
func (c Config) Levels() int { return len(c.Channels) }

// Upscale is the ratio of image to latent side, 2^(levels−1) (8 in SD).
func (c Config) Upscale() int { return 1 << (c.Levels() - 1) }

// Ch and ChMult are the ldm config's ch and ch_mult, taking ch_mult[0] = 1 (only their products
// are in the weights). ChMult is nil when a level's channels are not a multiple of level 0's.
func (c Config) Ch() int { return c.Channels[0] }

// ChMult: see Ch.
func (c Config) ChMult() []int {
	m := make([]int, len(c.Channels))
	for i, ch := range c.Channels {
		if ch%c.Channels[0] != 0 {
			return nil
		}
		m[i] = ch / c.Channels[0]
	}
	return m
}

// Validate reports a configuration the decoder cannot run.
func (c Config) Validate() error {
	if c.Levels() == 0 {
		return fmt.Errorf("decoder has no level")
	}
	if len(c.LevelAttn) != c.Levels() {
		return fmt.Errorf("%d levels but %d attention flags", c.Levels(), len(c.LevelAttn))
	}
	for i, ch := range c.Channels {
		if ch <= 0 || ch%Groups != 0 {
			return fmt.Errorf("level %d has %d channels, want a positive multiple of %d (GroupNorm groups)", i, ch, Groups)
		}
	}
	if c.EmbedDim <= 0 || c.ZChannels <= 0 || c.OutChannels <= 0 || c.NumResBlocks < 0 {
		return fmt.Errorf("embed %d, z %d and out %d channels must be positive, num_res_blocks %d ≥ 0", c.EmbedDim, c.ZChannels, c.OutChannels, c.NumResBlocks)
	}
	return nil
}

// String is the decoder's one-line description.
func (c Config) String() string {
	arch := fmt.Sprintf("channels %v", c.Channels)
	if m := c.ChMult(); m != nil {
		arch = fmt.Sprintf("ch %d, ch_mult %v", c.Ch(), m)
	}
	attn := "mid attention"
	if !c.MidAttn {
		attn = "no mid attention"
	}
	var at []string
	for i, a := range c.LevelAttn {
		if a {
			at = append(at, fmt.Sprint(i))
		}
	}
	if len(at) > 0 {
		attn += ", attention at levels " + strings.Join(at, ",")
	}
	return fmt.Sprintf("AutoencoderKL decoder: %s, num_res_blocks %d, z %d, embed %d, out %d, %s",
		arch, c.NumResBlocks, c.ZChannels, c.EmbedDim, c.OutChannels, attn)
}

// Decoder is an AutoencoderKL decoder with its weights resident on a backend. It may be used from
// several goroutines; passes run one at a time.
type Decoder struct {
	Config
	Layout      Layout  // the checkpoint's key layout
	Path        string  // the checkpoint it was read from
	Hash        string  // the checkpoint file's sha256 (hex; set by Load)
	ScaleFactor float64 // the latent is divided by it before decoding (ScaleFactor by default)

	backend backends.Backend
	native  bool           // 3×3 convs with the backend's convolution (else im2col + matmul)
	args    []any          // weights in paramOrder
	index   map[string]int // LDM parameter name → position in args

	mu    sync.Mutex
	execs map[bool]*Exec // by probe
}

// nativeConv tells whether the backend's own convolution should be used: everywhere but on the
// pure-Go backend, whose convolution is a scalar loop several times slower than im2col + matmul.
func nativeConv(b backends.Backend) bool {
	return b != nil && !strings.HasPrefix(b.Name(), "SimpleGo")
}

// Backend is the backend the weights live on.
func (d *Decoder) Backend() backends.Backend { return d.backend }

// Probe receives named intermediates (NCHW) of the whole batch, once each after the last pass;
// the tensor is only valid during the call. Names follow testdata/sd-vae: z, post_quant_conv, conv_in,
// mid_block_1, mid_attn_1, mid, up_{L−1} … up_0, image.
type Probe = hook.Probe

// Options steer one decode.
type Options struct {
	BatchSize int                   // latents per pass (0 = DefaultBatchSize); bounds memory
	Probe     Probe                 // nil = none (probing adds graph outputs)
	Progress  func(done, total int) // called after each batch
}

// ProbeNames lists the intermediates a probe receives, in graph order.
func (c Config) ProbeNames() []string {
	names := []string{"z", "post_quant_conv", "conv_in", "mid_block_1"}
	if c.MidAttn {
		names = append(names, "mid_attn_1")
	}
	names = append(names, "mid")
	for i := c.Levels() - 1; i >= 0; i-- {
		names = append(names, fmt.Sprintf("up_%d", i))
	}
	return append(names, "image")
}

// ID names the decoder by its weights, for run configurations: "sd-vae@" and the first 16 hex
// digits of the checkpoint's sha256.
func (d *Decoder) ID() string { return IDOf(d.Hash) }

// IDOf is the ID of a decoder whose checkpoint has the given sha256 (hex), known without loading it.
func IDOf(hash string) string { return "sd-vae@" + hash[:min(16, len(hash))] }

// ImageShape is the shape of the image decoded from a latent [c, h, w].
func (d *Decoder) ImageShape(c, h, w int) (ic, ih, iw int, err error) {
	if c != d.EmbedDim || h <= 0 || w <= 0 {
		return 0, 0, 0, fmt.Errorf("a %d×%d×%d latent does not fit the decoder (%d latent channels)", c, h, w, d.EmbedDim)
	}
	return d.OutChannels, h * d.Upscale(), w * d.Upscale(), nil
}

// Decode decodes batch square latents in one pass [batch, EmbedDim, s, s] (flat NCHW, as the sampler returns
// them, i.e. scaled by ScaleFactor) into images [batch, OutChannels, s·Upscale, s·Upscale] (flat
// NCHW, about [−1, 1]; Image01 maps them to [0, 1]).
func (d *Decoder) Decode(latent []float32, batch int) ([]float32, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("vae: decode: batch %d, want ≥ 1", batch)
	}
	per := len(latent) / batch
	side := int(math.Round(math.Sqrt(float64(per / max(d.EmbedDim, 1)))))
	if len(latent) != batch*d.EmbedDim*side*side || side == 0 {
		return nil, fmt.Errorf("vae: decode: latent has %d values for batch %d, not %d×%d×s×s (the decoder takes %d latent channels, square latents; use DecodeShape for others)",
			len(latent), batch, batch, d.EmbedDim, d.EmbedDim)
	}
	// One pass of all of them: the caller chose the chunk (runner's --vae-batch); DecodeShape's
	// default of one latent per pass would undo it.
	return d.DecodeShape(latent, []int{batch, d.EmbedDim, side, side}, Options{BatchSize: batch})
}

// DecodeShape decodes latents of shape [B, EmbedDim, h, w] (flat NCHW) into images
// [B, OutChannels, h·Upscale, w·Upscale], batch by batch.
func (d *Decoder) DecodeShape(latent []float32, shape []int, opt Options) ([]float32, error) {
	if len(shape) != 4 {
		return nil, fmt.Errorf("vae: decode: latent shape %v, want [B, %d, h, w]", shape, d.EmbedDim)
	}
	B, C, H, W := shape[0], shape[1], shape[2], shape[3]
	switch {
	case C != d.EmbedDim:
		return nil, fmt.Errorf("vae: decode: latent has %d channels (shape %v), the decoder takes %d", C, shape, d.EmbedDim)
	case B <= 0 || H <= 0 || W <= 0:
		return nil, fmt.Errorf("vae: decode: latent shape %v, want positive sizes", shape)
	case len(latent) != B*C*H*W:
		return nil, fmt.Errorf("vae: decode: latent has %d values, shape %v needs %d", len(latent), shape, B*C*H*W)
	case opt.BatchSize < 0:
		return nil, fmt.Errorf("vae: decode: batch size %d, want ≥ 1 (or 0 for %d)", opt.BatchSize, DefaultBatchSize)
	}
	for i, v := range latent {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("vae: decode: latent holds a non-finite value (%v) at flat index %d", v, i)
		}
	}
	bs := opt.BatchSize
	if bs == 0 {
		bs = DefaultBatchSize
	}
	s := d.Upscale()
	in, out := C*H*W, d.OutChannels*H*s*W*s
	image := make([]float32, B*out)
	d.mu.Lock()
	defer d.mu.Unlock()
	probe := opt.Probe != nil
	var names []string
	if probe {
		names = d.ProbeNames()
	}
	probed, probeDims := make([][]float32, len(names)), make([][]int, len(names))
	for start := 0; start < B; start += bs {
		m := min(bs, B-start)
		err := gx.Catch(func() {
			x := tensors.FromFlatDataAndDimensions(latent[start*in:(start+m)*in], m, C, H, W)
			outs := d.exec(probe).MustExec(append([]any{x}, d.args...)...)
			x.MustFinalizeAll()
			for i := range names { // probes are gathered over the batches, then handed over whole
				o := outs[1+i]
				if start == 0 {
					probeDims[i] = append([]int{B}, o.Shape().Dimensions[1:]...)
				}
				probed[i] = append(probed[i], tensors.MustCopyFlatData[float32](o)...)
			}
			copy(image[start*out:(start+m)*out], tensors.MustCopyFlatData[float32](outs[0]))
			for _, o := range outs {
				o.MustFinalizeAll()
			}
		})
		if err != nil {
			return nil, fmt.Errorf("vae: decode latents %d..%d: %w", start, start+m-1, err)
		}
		if opt.Progress != nil {
			opt.Progress(start+m, B)
		}
	}
	for i, name := range names {
		t := tensors.FromFlatDataAndDimensions(probed[i], probeDims[i]...)
		opt.Probe(name, t)
		t.MustFinalizeAll()
	}
	return image, nil
}

// Image01 is clamp((image+1)/2, 0, 1), as txt2img does before saving (float32 arithmetic).
func Image01(image []float32) []float32 {
	out := make([]float32, len(image))
	for i, v := range image {
		out[i] = min(max((v+1)/2, 0), 1)
	}
	return out
}

// exec returns the compiled-graph family with or without probe outputs, creating it once.
func (d *Decoder) exec(probe bool) *Exec {
	if d.execs == nil {
		d.execs = map[bool]*Exec{}
	}
	if e, ok := d.execs[probe]; ok {
		return e
	}
	e := MustNewExec(d.backend, func(in []*Node) []*Node { return d.graph(in, probe) }).
		WithName(fmt.Sprintf("vae/probe=%t", probe))
	e.SetMaxCache(-1) // one graph per latent size and batch size
	d.execs[probe] = e
	return e
}

// ---- graph --------------------------------------------------------------------------------

// builder carries the weight nodes and the probe outputs while the graph is built.
type builder struct {
	d      *Decoder
	w      []*Node
	probes []*Node // NCHW, in ProbeNames order
	probe  bool
}

// p is the weight node of an LDM parameter name.
func (b *builder) p(name string) *Node {
	i, ok := b.d.index[name]
	if !ok {
		panic(fmt.Sprintf("vae: internal error: no parameter %q", name))
	}
	return b.w[i]
}

// keep records an intermediate (NHWC in the graph) for the probe, as NCHW.
func (b *builder) keep(x *Node) {
	if b.probe {
		b.probes = append(b.probes, TransposeAllAxes(x, 0, 3, 1, 2))
	}
}

// graph: in[0] is the latent [B, C, H, W] (NCHW), the rest the weights in paramOrder. Outputs the
// image [B, OutChannels, H·s, W·s] and, with probe, the intermediates of ProbeNames.
func (d *Decoder) graph(in []*Node, probe bool) []*Node {
	b := &builder{d: d, w: in[1:], probe: probe}
	x := TransposeAllAxes(in[0], 0, 2, 3, 1) // NHWC
	// decode_first_stage's 1/scale_factor · z; the golden z is latent / float32(scale_factor) bit for bit.
	z := Div(x, Scalar(x.Graph(), dtypes.Float32, d.ScaleFactor)) // (DivScalar multiplies by 1/s)
	b.keep(z)
	h := b.conv1x1(z, "post_quant_conv")
	b.keep(h)
	h = b.conv3x3(h, "decoder.conv_in")
	b.keep(h)
	h = b.resBlock(h, "decoder.mid.block_1")
	b.keep(h)
	if d.MidAttn {
		h = b.attnBlock(h, "decoder.mid.attn_1")
		b.keep(h)
	}
	h = b.resBlock(h, "decoder.mid.block_2")
	b.keep(h)
	for i := d.Levels() - 1; i >= 0; i-- {
		for j := range d.NumResBlocks + 1 {
			h = b.resBlock(h, fmt.Sprintf("decoder.up.%d.block.%d", i, j))
			if d.LevelAttn[i] {
				h = b.attnBlock(h, fmt.Sprintf("decoder.up.%d.attn.%d", i, j))
			}
		}
		if i != 0 {
			h = b.conv3x3(upsample2(h), fmt.Sprintf("decoder.up.%d.upsample.conv", i))
		}
		b.keep(h)
	}
	h = activations.Swish(b.groupNorm(h, "decoder.norm_out"))
	h = b.conv3x3(h, "decoder.conv_out")
	b.keep(h)
	image := TransposeAllAxes(h, 0, 3, 1, 2)
	return append([]*Node{image}, b.probes...)
}

// resBlock is ldm's ResnetBlock (no timestep embedding, dropout 0).
func (b *builder) resBlock(x *Node, name string) *Node {
	h := b.conv3x3(activations.Swish(b.groupNorm(x, name+".norm1")), name+".conv1")
	h = b.conv3x3(activations.Swish(b.groupNorm(h, name+".norm2")), name+".conv2")
	if _, ok := b.d.index[name+".nin_shortcut.weight"]; ok {
		x = b.conv1x1(x, name+".nin_shortcut")
	}
	return Add(x, h)
}

// attnBlock is ldm's AttnBlock: single-head attention over all positions, q·kᵀ scaled by C^−½
// after the product, softmax over the keys, residual.
func (b *builder) attnBlock(x *Node, name string) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	h := Reshape(b.groupNorm(x, name+".norm"), B, H*W, C)
	q := b.conv1x1(h, name+".q")
	k := b.conv1x1(h, name+".k")
	v := b.conv1x1(h, name+".v")
	scores := MulScalar(Einsum("bic,bjc->bij", q, k), math.Pow(float64(C), -0.5))
	o := Einsum("bij,bjc->bic", Softmax(scores, -1), v)
	o = b.conv1x1(o, name+".proj_out")
	return Add(x, Reshape(o, B, H, W, C))
}

// groupNorm is GroupNorm(32, C, eps 1e-6, affine) on NHWC: biased variance over each group's
// channels and all positions. The sums run in stages (group channels, then columns, then rows)
// so no float32 accumulation spans a whole feature map.
func (b *builder) groupNorm(x *Node, name string) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	xr := Reshape(x, B, H, W, Groups, C/Groups)
	n := float64(H * W * (C / Groups))
	sum := func(y *Node) *Node {
		return ReduceAndKeep(ReduceAndKeep(ReduceAndKeep(y, ReduceSum, 4), ReduceSum, 2), ReduceSum, 1)
	}
	xc := Sub(xr, DivScalar(sum(xr), n))
	variance := DivScalar(sum(Square(xc)), n)
	y := Reshape(Mul(xc, Rsqrt(AddScalar(variance, Eps))), B, H, W, C)
	return Add(Mul(y, Reshape(b.p(name+".weight"), 1, 1, 1, C)), Reshape(b.p(name+".bias"), 1, 1, 1, C))
}

// conv1x1 is a 1×1 convolution (or a Linear) over the last axis: x·Wᵀ + bias with W [O, C].
func (b *builder) conv1x1(x *Node, name string) *Node {
	w := b.p(name + ".weight")
	y := DotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{1}, nil)
	return addBias(y, b.p(name+".bias"))
}

// conv3x3 is a 3×3, stride 1, padding 1 convolution of an NHWC tensor.
func (b *builder) conv3x3(x *Node, name string) *Node {
	w := b.p(name + ".weight")
	var y *Node
	if b.d.native { // kernel [3, 3, C, O], channels last by default
		y = Convolve(x, w).PadSame().Strides(1).Done()
	} else { // the same kernel as a [9C, O] matrix, rows in (ky, kx, c) order
		d := w.Shape().Dimensions
		y = DotGeneral(gx.Im2Col3(x, 1), []int{3}, nil, Reshape(w, d[0]*d[1]*d[2], d[3]), []int{0}, nil)
	}
	return addBias(y, b.p(name+".bias"))
}

func addBias(y, bias *Node) *Node {
	dims := make([]int, y.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[len(dims)-1] = bias.Shape().Dimensions[0]
	return Add(y, Reshape(bias, dims...))
}

// upsample2 is nearest-neighbour ×2 (torch interpolate, scale_factor 2, mode "nearest") on NHWC:
// every pixel repeated into a 2×2 block.
func upsample2(x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	y := BroadcastToDims(Reshape(x, B, H, 1, W, 1, C), B, H, 2, W, 2, C)
	return Reshape(y, B, 2*H, 2*W, C)
}
