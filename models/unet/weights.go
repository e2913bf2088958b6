package unet

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// Layout is the key scheme of a checkpoint's UNet weights.
type Layout int

const (
	// LDM is the CompVis layout (input_blocks.{k}.{s}, middle_block, output_blocks, time_embed,
	// out), bare or under Prefix "model.diffusion_model." inside a whole SD checkpoint.
	LDM Layout = iota
	// Diffusers is UNet2DConditionModel's diffusion_pytorch_model.safetensors (down_blocks,
	// mid_block, up_blocks, resnets/attentions/downsamplers/upsamplers).
	Diffusers
)

func (l Layout) String() string {
	if l == Diffusers {
		return "diffusers"
	}
	return "ldm"
}

// LDMPrefix is the key prefix of the UNet inside a whole Stable Diffusion checkpoint.
const LDMPrefix = "model.diffusion_model."

// keys reads a checkpoint's UNet weights under their LDM names, whatever its layout.
type keys struct {
	f      *checkpoint.File
	layout Layout
	prefix string // LDMPrefix or "" (LDM layout only)
	levels int    // len(channel_mult)
	nrb    int    // num_res_blocks (diffusers names need both)
}

// name is the file's key of an LDM key.
func (k *keys) name(ldm string) string {
	if k.layout == LDM {
		return k.prefix + ldm
	}
	name, err := DiffusersKey(ldm, k.levels, k.nrb)
	if err != nil { // every key asked for comes from ExpectedShapes, which the mapping covers
		panic(err)
	}
	return name
}

// DiffusersKey maps one LDM UNet key onto the diffusers UNet2DConditionModel name of the same
// tensor (shapes are equal in both layouts). levels is len(channel_mult), nrb num_res_blocks:
// LDM numbers blocks through the whole network, diffusers per level, with up_blocks counted from
// the lowest resolution as the output blocks run.
//
//	time_embed.{0,2}.*                   time_embedding.linear_{1,2}.*
//	input_blocks.0.0.*                   conv_in.*
//	input_blocks.{1+l(nrb+1)+j}.0.*      down_blocks.{l}.resnets.{j}.*           (j < nrb)
//	input_blocks.{1+l(nrb+1)+j}.1.*      down_blocks.{l}.attentions.{j}.*
//	input_blocks.{(l+1)(nrb+1)}.0.op.*   down_blocks.{l}.downsamplers.0.conv.*
//	middle_block.{0,1,2}.*               mid_block.resnets.0, attentions.0, resnets.1
//	output_blocks.{u(nrb+1)+j}.0.*       up_blocks.{u}.resnets.{j}.*             (j ≤ nrb)
//	output_blocks.{u(nrb+1)+j}.1.*       up_blocks.{u}.attentions.{j}.*
//	output_blocks.{u(nrb+1)+nrb}.{1|2}.conv.*  up_blocks.{u}.upsamplers.0.conv.*
//	out.0.*, out.2.*                     conv_norm_out.*, conv_out.*
//	ResBlock in_layers.0, in_layers.2, emb_layers.1, out_layers.0, out_layers.3, skip_connection
//	                                     norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
//
// SpatialTransformer parameters keep their names (norm, proj_in, transformer_blocks.*, proj_out).
func DiffusersKey(ldm string, levels, nrb int) (string, error) {
	bad := func() (string, error) {
		return "", fmt.Errorf("unet: no diffusers name for LDM key %q (%d levels, %d res blocks each)", ldm, levels, nrb)
	}
	if levels <= 0 || nrb <= 0 {
		return bad()
	}
	p := strings.Split(ldm, ".")
	last := p[len(p)-1]
	if len(p) < 3 || (last != "weight" && last != "bias") {
		return bad()
	}
	resnet := map[string]string{"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
		"out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
	// res maps a ResBlock parameter p[n:] (module path then weight|bias).
	res := func(n int) (string, bool) {
		m, ok := resnet[strings.Join(p[n:len(p)-1], ".")]
		return m + "." + last, ok
	}
	rest := func(n int) string { return strings.Join(p[n:], ".") }
	switch p[0] {
	case "time_embed":
		if len(p) == 3 && (p[1] == "0" || p[1] == "2") {
			return "time_embedding.linear_" + map[string]string{"0": "1", "2": "2"}[p[1]] + "." + last, nil
		}
	case "out":
		if len(p) == 3 && p[1] == "0" {
			return "conv_norm_out." + last, nil
		}
		if len(p) == 3 && p[1] == "2" {
			return "conv_out." + last, nil
		}
	case "middle_block":
		switch {
		case p[1] == "1":
			return "mid_block.attentions.0." + rest(2), nil
		case p[1] == "0" || p[1] == "2":
			if m, ok := res(2); ok {
				return fmt.Sprintf("mid_block.resnets.%d.%s", map[string]int{"0": 0, "2": 1}[p[1]], m), nil
			}
		}
	case "input_blocks":
		k, err := strconv.Atoi(p[1])
		if err != nil || k < 0 || len(p) < 4 {
			return bad()
		}
		if k == 0 {
			if p[2] == "0" && len(p) == 4 {
				return "conv_in." + last, nil
			}
			return bad()
		}
		l, j := (k-1)/(nrb+1), (k-1)%(nrb+1)
		if l >= levels {
			return bad()
		}
		down := fmt.Sprintf("down_blocks.%d.", l)
		switch {
		case j == nrb: // the level's Downsample (none after the last level)
			if l < levels-1 && p[2] == "0" && len(p) == 5 && p[3] == "op" {
				return down + "downsamplers.0.conv." + last, nil
			}
		case p[2] == "0":
			if m, ok := res(3); ok {
				return fmt.Sprintf("%sresnets.%d.%s", down, j, m), nil
			}
		case p[2] == "1":
			return fmt.Sprintf("%sattentions.%d.%s", down, j, rest(3)), nil
		}
	case "output_blocks":
		k, err := strconv.Atoi(p[1])
		if err != nil || k < 0 || len(p) < 4 {
			return bad()
		}
		u, j := k/(nrb+1), k%(nrb+1)
		if u >= levels {
			return bad()
		}
		up := fmt.Sprintf("up_blocks.%d.", u)
		switch {
		case p[2] == "0":
			if m, ok := res(3); ok {
				return fmt.Sprintf("%sresnets.%d.%s", up, j, m), nil
			}
		case p[3] == "conv": // Upsample (at index 1 without attention, 2 with)
			if j == nrb && u < levels-1 && len(p) == 5 && (p[2] == "1" || p[2] == "2") {
				return up + "upsamplers.0.conv." + last, nil
			}
		case p[2] == "1":
			return fmt.Sprintf("%sattentions.%d.%s", up, j, rest(3)), nil
		}
	}
	return bad()
}

// detect finds a checkpoint's layout and counts its levels and res blocks per level.
func detect(f *checkpoint.File) (*keys, error) {
	has := func(k string) bool { t, ok := f.Tensors[k]; return ok && t != nil }
	count := func(format string) int {
		n := 0
		for has(fmt.Sprintf(format, n)) {
			n++
		}
		return n
	}
	if has("conv_in.weight") && has("down_blocks.0.resnets.0.conv1.weight") {
		return &keys{f: f, layout: Diffusers, levels: count("down_blocks.%d.resnets.0.conv1.weight"),
			nrb: count("down_blocks.0.resnets.%d.conv1.weight")}, nil
	}
	prefix := ""
	if !has("input_blocks.0.0.weight") {
		if !has(LDMPrefix + "input_blocks.0.0.weight") {
			if parts := checkpoint.SDParts(f); len(parts) > 0 {
				return nil, fmt.Errorf("unet: %s: the Stable Diffusion checkpoint has no UNet (%sinput_blocks.*); it holds %s", f.Path, LDMPrefix, strings.Join(parts, " and "))
			}
			return nil, fmt.Errorf("unet: %s: not a UNet checkpoint: no %q (LDM), %q (whole SD checkpoint) or %q (diffusers)",
				f.Path, "input_blocks.0.0.weight", LDMPrefix+"input_blocks.0.0.weight", "down_blocks.0.resnets.0.conv1.weight")
		}
		prefix = LDMPrefix
	}
	// The input blocks run nrb ResBlocks per level with a Downsample between levels.
	k := &keys{f: f, layout: LDM, prefix: prefix, levels: 1}
	run, total := 0, 0
	for b := 1; ; b++ {
		switch {
		case has(fmt.Sprintf("%sinput_blocks.%d.0.in_layers.2.weight", prefix, b)):
			run++
		case has(fmt.Sprintf("%sinput_blocks.%d.0.op.weight", prefix, b)):
			if k.nrb == 0 {
				k.nrb = run
			}
			if run != k.nrb || run == 0 {
				return nil, fmt.Errorf("unet: %s: input block %d is a Downsample after %d ResBlocks, want %d (every level has num_res_blocks)", f.Path, b, run, k.nrb)
			}
			k.levels++
			run = 0
		default:
			total = b - 1
			if k.nrb == 0 {
				k.nrb = run
			}
			if run != k.nrb || run == 0 {
				return nil, fmt.Errorf("unet: %s: the last level has %d ResBlocks (input blocks 1…%d), want %d", f.Path, run, total, max(k.nrb, 1))
			}
			return k, nil
		}
	}
}

// SDv1 is Stable Diffusion v1's UNet (v1-inference.yaml): 859,520,964 parameters in 686 tensors.
var SDv1 = Config{InChannels: 4, OutChannels: 4, ModelChannels: 320, TimeEmbedDim: 1280, ChannelMult: []int{1, 2, 4, 4},
	NumResBlocks: 2, AttentionLevels: []bool{true, true, true, false}, TransformerDepth: 1, ContextDim: 768, Heads: DefaultHeads}

// InferConfig reads the architecture off a checkpoint in either layout: model_channels, in and
// time-embedding channels from conv_in and time_embed, each level's channels from its first
// ResBlock, num_res_blocks from the block count, attention wherever a SpatialTransformer sits,
// transformer depth, context_dim and the projection kind (1×1 conv or Linear) from the middle
// block's transformer, out channels from the output conv. heads (num_heads; 8 in SD v1) cannot
// be read off the weights: q, k, v are whole [heads·dim_head, ·] matrices.
func InferConfig(f *checkpoint.File, heads int) (Config, Layout, error) {
	k, err := detect(f)
	if err != nil {
		return Config{}, 0, err
	}
	c, err := k.config(heads)
	return c, k.layout, err
}

func (k *keys) config(heads int) (Config, error) {
	f := k.f
	get := func(ldm string, rank int) ([]int, error) {
		n := k.name(ldm)
		t, ok := f.Tensors[n]
		if !ok || t == nil {
			return nil, fmt.Errorf("unet: %s: missing tensor %q", f.Path, n)
		}
		if rank > 0 && len(t.Shape) != rank {
			return nil, fmt.Errorf("unet: %s: tensor %q has shape %s, want rank %d", f.Path, n, checkpoint.Shape(t.Shape), rank)
		}
		return t.Shape, nil
	}
	has := func(ldm string) bool { t, ok := f.Tensors[k.name(ldm)]; return ok && t != nil }
	in, err := get("input_blocks.0.0.weight", 4)
	if err != nil {
		return Config{}, err
	}
	te, err := get("time_embed.0.weight", 2)
	if err != nil {
		return Config{}, err
	}
	out, err := get("out.2.weight", 4)
	if err != nil {
		return Config{}, err
	}
	c := Config{ModelChannels: in[0], InChannels: in[1], TimeEmbedDim: te[0], OutChannels: out[0], NumResBlocks: k.nrb, Heads: heads,
		ChannelMult: make([]int, k.levels), AttentionLevels: make([]bool, k.levels)}
	for l := range k.levels {
		b := fmt.Sprintf("input_blocks.%d.", 1+l*(k.nrb+1))
		w, err := get(b+"0.in_layers.2.weight", 4)
		if err != nil {
			return Config{}, err
		}
		if w[0]%c.ModelChannels != 0 {
			return Config{}, fmt.Errorf("unet: %s: level %d has %d channels, not a multiple of model_channels %d", f.Path, l, w[0], c.ModelChannels)
		}
		c.ChannelMult[l] = w[0] / c.ModelChannels
		c.AttentionLevels[l] = has(b + "1.proj_in.weight")
	}
	const st = "middle_block.1."
	proj, err := get(st+"proj_in.weight", 0)
	if err != nil {
		return Config{}, fmt.Errorf("%w (the middle block's SpatialTransformer; only use_spatial_transformer UNets are supported)", err)
	}
	c.LinearProj = len(proj) == 2
	for has(fmt.Sprintf("%stransformer_blocks.%d.attn1.to_q.weight", st, c.TransformerDepth)) {
		c.TransformerDepth++
	}
	kw, err := get(st+"transformer_blocks.0.attn2.to_k.weight", 2)
	if err != nil {
		return Config{}, err
	}
	c.ContextDim = kw[1]
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("unet: %s: %w", f.Path, err)
	}
	return c, nil
}

// ExpectedShapes lists every tensor of the configuration under its LDM name with its PyTorch
// shape (convs [O, C, k, k], Linear [O, C]).
func (c Config) ExpectedShapes() map[string][]int {
	m := map[string][]int{}
	vec := func(name string, n int) { m[name+".weight"], m[name+".bias"] = []int{n}, []int{n} }
	conv := func(name string, o, i, k int) { m[name+".weight"], m[name+".bias"] = []int{o, i, k, k}, []int{o} }
	lin := func(name string, o, i int) { m[name+".weight"], m[name+".bias"] = []int{o, i}, []int{o} }
	ted := c.TimeEmbedDim
	lin("time_embed.0", ted, c.ModelChannels)
	lin("time_embed.2", ted, ted)
	for _, b := range c.Blocks() {
		ch := b.InChannels + b.SkipChannels
		for j, layer := range b.Layers {
			name := fmt.Sprintf("%s.%d", b.Name, j)
			switch layer {
			case LayerConvIn:
				conv(name, b.OutChannels, ch, 3)
				ch = b.OutChannels
			case LayerRes:
				out := b.OutChannels
				vec(name+".in_layers.0", ch)
				conv(name+".in_layers.2", out, ch, 3)
				lin(name+".emb_layers.1", out, ted)
				vec(name+".out_layers.0", out)
				conv(name+".out_layers.3", out, out, 3)
				if ch != out {
					conv(name+".skip_connection", out, ch, 1)
				}
				ch = out
			case LayerAttn:
				vec(name+".norm", ch)
				if c.LinearProj {
					lin(name+".proj_in", ch, ch)
					lin(name+".proj_out", ch, ch)
				} else {
					conv(name+".proj_in", ch, ch, 1)
					conv(name+".proj_out", ch, ch, 1)
				}
				for d := range c.TransformerDepth {
					tb := fmt.Sprintf("%s.transformer_blocks.%d.", name, d)
					for _, a := range []string{"attn1", "attn2"} {
						kv := ch
						if a == "attn2" {
							kv = c.ContextDim
						}
						m[tb+a+".to_q.weight"] = []int{ch, ch}
						m[tb+a+".to_k.weight"] = []int{ch, kv}
						m[tb+a+".to_v.weight"] = []int{ch, kv}
						lin(tb+a+".to_out.0", ch, ch)
					}
					lin(tb+"ff.net.0.proj", 2*FFMult*ch, ch)
					lin(tb+"ff.net.2", ch, FFMult*ch)
					for _, n := range []string{"norm1", "norm2", "norm3"} {
						vec(tb+n, ch)
					}
				}
			case LayerDown:
				conv(name+".op", ch, ch, 3)
			case LayerUp:
				conv(name+".conv", ch, ch, 3)
			}
		}
	}
	vec("out.0", c.ModelChannels*c.ChannelMult[0])
	conv("out.2", c.OutChannels, c.ModelChannels*c.ChannelMult[0], 3)
	return m
}

// unetKeys are the file's tensors that belong to the UNet; in a whole SD checkpoint the VAE,
// the text encoder and the EMA copies are ignored.
func (k *keys) unetKeys() map[string]*checkpoint.Tensor {
	if k.prefix == "" {
		return k.f.Tensors
	}
	out := map[string]*checkpoint.Tensor{}
	for name, t := range k.f.Tensors {
		if strings.HasPrefix(name, k.prefix) {
			out[name] = t
		}
	}
	return out
}

// check reports every missing, misshapen or unexpected UNet tensor in one error, under the
// file's own names.
func (k *keys) check(c Config) error {
	want := map[string][]int{}
	for ldm, shape := range c.ExpectedShapes() {
		want[k.name(ldm)] = shape
	}
	model := fmt.Sprintf("%s (%s layout)", c, k.layout)
	if err := checkpoint.CheckShapes(k.f.Path, k.unetKeys(), want, model, nil); err != nil {
		return fmt.Errorf("unet: %w", err)
	}
	return nil
}

// group is the weights of one graph (a block, the time embedding or the output head) as
// backend-ready host tensors, in the sorted order of their LDM names.
type group struct {
	names []string
	index map[string]int // LDM name → position
	args  []*tensors.Tensor
}

// load reads the tensors whose LDM names start with prefix. k×k conv kernels become
// [k, k, C, O] (HWIO: the backend convolution's channels-last kernel, and as a [k·k·C, O]
// matrix the im2col product's); 1×1 convs and Linear weights [C, O], so every graph
// multiplies x·W.
func (k *keys) load(shapes map[string][]int, prefix string) (*group, error) {
	g := &group{index: map[string]int{}}
	for _, ldm := range slices.Sorted(maps.Keys(shapes)) {
		if !strings.HasPrefix(ldm, prefix) {
			continue
		}
		name := k.name(ldm)
		data, err := k.f.Tensors[name].Float32()
		if err != nil {
			return nil, fmt.Errorf("unet: %s: tensor %q: %w", k.f.Path, name, err)
		}
		for i, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("unet: %s: tensor %q holds a non-finite value (%v) at flat index %d", k.f.Path, name, v, i)
			}
		}
		shape := shapes[ldm]
		var x *tensors.Tensor
		switch {
		case len(shape) == 4 && shape[2]*shape[3] > 1:
			O, C, kh, kw := shape[0], shape[1], shape[2], shape[3]
			out := make([]float32, len(data))
			for o := range O {
				for ci := range C {
					for y := range kh {
						for xx := range kw {
							out[((y*kw+xx)*C+ci)*O+o] = data[((o*C+ci)*kh+y)*kw+xx]
						}
					}
				}
			}
			x = tensors.FromFlatDataAndDimensions(out, kh, kw, C, O)
		case len(shape) >= 2:
			O, C := shape[0], shape[1]
			out := make([]float32, len(data))
			for o := range O {
				for ci := range C {
					out[ci*O+o] = data[o*C+ci]
				}
			}
			x = tensors.FromFlatDataAndDimensions(out, C, O)
		default:
			x = tensors.FromFlatDataAndDimensions(append([]float32(nil), data...), shape...)
		}
		g.index[ldm] = len(g.args)
		g.names = append(g.names, ldm)
		g.args = append(g.args, x)
	}
	return g, nil
}

// New checks a checkpoint (either layout) against the configuration read off it, with heads
// attention heads per transformer (num_heads; DefaultHeads for SD v1), and puts the weights on
// the backend.
func New(b backends.Backend, f *checkpoint.File, heads int) (*Model, error) {
	return newModel(b, f, heads, nativeConv(b))
}

// Shape is a model of configuration c without weights: its blocks, layouts and FLOPs (a
// denoiser's Layout and BlockFLOPs) are known, and Forward refuses to run. runbench flops counts
// SD v1 with it without reading 3.4 GB of weights.
func Shape(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Model{Config: c, blocks: c.Blocks()}, nil
}

func newModel(b backends.Backend, f *checkpoint.File, heads int, native bool) (*Model, error) {
	if b == nil {
		return nil, fmt.Errorf("unet: no backend")
	}
	k, err := detect(f)
	if err != nil {
		return nil, err
	}
	c, err := k.config(heads)
	if err != nil {
		return nil, err
	}
	if err := k.check(c); err != nil {
		return nil, err
	}
	m := &Model{Config: c, Layout: k.layout, Path: f.Path, backend: b, native: native, blocks: c.Blocks()}
	shapes := c.ExpectedShapes()
	if m.embedW, err = k.load(shapes, "time_embed."); err != nil {
		return nil, err
	}
	if m.headW, err = k.load(shapes, "out."); err != nil {
		return nil, err
	}
	for _, bk := range m.blocks {
		g, err := k.load(shapes, bk.Name+".")
		if err != nil {
			return nil, err
		}
		m.blockW = append(m.blockW, g)
	}
	return m, nil
}

// Load reads a UNet checkpoint (safetensors or PyTorch .pt/.ckpt/.bin; LDM keys, a whole SD
// checkpoint's model.diffusion_model.*, or diffusers keys), infers the architecture and puts it
// on the backend with heads attention heads (DefaultHeads for SD v1).
func Load(b backends.Backend, path string, heads int) (*Model, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	m, err := New(b, f, heads)
	if err != nil {
		return nil, err
	}
	if m.Hash, err = checkpoint.FileHash(path); err != nil {
		return nil, err
	}
	return m, nil
}
