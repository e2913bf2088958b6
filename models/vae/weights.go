package vae

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

// Layout is the key scheme of a checkpoint's decoder weights.
type Layout int

const (
	// LDM is the CompVis / Stability layout: post_quant_conv.*, decoder.up.{i}.block.{j}.*,
	// decoder.mid.attn_1.{q,k,v,proj_out} (1×1 convs); with Prefix "first_stage_model." inside a
	// whole Stable Diffusion checkpoint.
	LDM Layout = iota
	// Diffusers is AutoencoderKL's diffusion_pytorch_model.safetensors: decoder.up_blocks.{k} in
	// execution order (k = levels−1−i), resnets/upsamplers/attentions, Linear attention weights.
	Diffusers
)

func (l Layout) String() string {
	if l == Diffusers {
		return "diffusers"
	}
	return "ldm"
}

// LDMPrefix is the key prefix of the VAE inside a whole Stable Diffusion checkpoint.
const LDMPrefix = "first_stage_model."

// keys reads a checkpoint's decoder weights under their LDM names, whatever its layout.
type keys struct {
	f      *checkpoint.File
	layout Layout
	prefix string // LDMPrefix or "" (LDM layout only)
	levels int    // needed to flip diffusers' up_blocks order
	legacy bool   // diffusers attention named query/key/value/proj_attn
}

// name is the file's key for an LDM key, and whether the file stores it as a Linear weight [O, C]
// where LDM has a 1×1 conv [O, C, 1, 1].
func (k *keys) name(ldm string) (string, bool) {
	if k.layout == LDM {
		return k.prefix + ldm, false
	}
	name, linear, err := DiffusersKey(ldm, k.levels, k.legacy)
	if err != nil { // every key asked for comes from ExpectedShapes, which the mapping covers
		panic(err)
	}
	return name, linear
}

// DiffusersKey maps one LDM decoder key onto the diffusers AutoencoderKL name of the same tensor
// (the one place where the two layouts meet). levels is the number of decoder levels (len ch_mult):
// diffusers numbers up_blocks in execution order, so LDM's up.{i} is up_blocks.{levels−1−i}.
// legacy selects the attention names of diffusers < 0.15 (query/key/value/proj_attn instead of
// to_q/to_k/to_v/to_out.0). linear reports that diffusers stores the weight as a Linear [O, C]
// where LDM has a 1×1 conv [O, C, 1, 1] (the attention projections).
//
//	post_quant_conv.*                   post_quant_conv.*
//	decoder.conv_in.*                   decoder.conv_in.*
//	decoder.mid.block_{1,2}.*           decoder.mid_block.resnets.{0,1}.*
//	decoder.mid.attn_1.*                decoder.mid_block.attentions.0.*
//	decoder.up.{i}.block.{j}.*          decoder.up_blocks.{L−1−i}.resnets.{j}.*
//	decoder.up.{i}.attn.{j}.*           decoder.up_blocks.{L−1−i}.attentions.{j}.*
//	decoder.up.{i}.upsample.conv.*      decoder.up_blocks.{L−1−i}.upsamplers.0.conv.*
//	decoder.norm_out.*                  decoder.conv_norm_out.*
//	decoder.conv_out.*                  decoder.conv_out.*
//	ResBlock nin_shortcut               conv_shortcut
//	AttnBlock norm, q, k, v, proj_out   group_norm, to_q, to_k, to_v, to_out.0 (legacy: query, key, value, proj_attn)
func DiffusersKey(ldm string, levels int, legacy bool) (name string, linear bool, err error) {
	bad := func() (string, bool, error) {
		return "", false, fmt.Errorf("vae: no diffusers name for LDM key %q (%d levels)", ldm, levels)
	}
	p := strings.Split(ldm, ".")
	last := p[len(p)-1]
	if last != "weight" && last != "bias" {
		return bad()
	}
	resnet := map[string]string{"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
	attn := map[string]string{"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
	if legacy {
		attn = map[string]string{"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}
	}
	// module maps a ResBlock's or an AttnBlock's parameter (p[n], p[n+1] = weight|bias).
	module := func(n int, table map[string]string, isAttn bool) (string, bool, error) {
		if len(p) != n+2 {
			return bad()
		}
		m, ok := table[p[n]]
		if !ok {
			return bad()
		}
		return m + "." + last, isAttn && p[n] != "norm" && last == "weight", nil
	}
	switch {
	case len(p) == 2 && p[0] == "post_quant_conv":
		return ldm, false, nil
	case len(p) == 3 && p[0] == "decoder" && (p[1] == "conv_in" || p[1] == "conv_out"):
		return ldm, false, nil
	case len(p) == 3 && p[0] == "decoder" && p[1] == "norm_out":
		return "decoder.conv_norm_out." + last, false, nil
	case len(p) >= 4 && p[0] == "decoder" && p[1] == "mid":
		switch p[2] {
		case "block_1", "block_2":
			m, _, err := module(3, resnet, false)
			if err != nil {
				return bad()
			}
			return fmt.Sprintf("decoder.mid_block.resnets.%d.%s", int(p[2][6]-'1'), m), false, nil
		case "attn_1":
			m, lin, err := module(3, attn, true)
			if err != nil {
				return bad()
			}
			return "decoder.mid_block.attentions.0." + m, lin, nil
		}
	case len(p) >= 5 && p[0] == "decoder" && p[1] == "up":
		i, err := strconv.Atoi(p[2])
		if err != nil || i < 0 || i >= levels {
			return bad()
		}
		up := fmt.Sprintf("decoder.up_blocks.%d.", levels-1-i)
		if p[3] == "upsample" {
			if len(p) != 6 || p[4] != "conv" {
				return bad()
			}
			return up + "upsamplers.0.conv." + last, false, nil
		}
		j, err := strconv.Atoi(p[4])
		if err != nil || j < 0 {
			return bad()
		}
		switch p[3] {
		case "block":
			m, _, err := module(5, resnet, false)
			if err != nil {
				return bad()
			}
			return fmt.Sprintf("%sresnets.%d.%s", up, j, m), false, nil
		case "attn":
			m, lin, err := module(5, attn, true)
			if err != nil {
				return bad()
			}
			return fmt.Sprintf("%sattentions.%d.%s", up, j, m), lin, nil
		}
	}
	return bad()
}

// detect finds the layout of a checkpoint (and the number of levels, which diffusers names need).
func detect(f *checkpoint.File) (*keys, error) {
	has := func(k string) bool { t, ok := f.Tensors[k]; return ok && t != nil }
	count := func(format string) int {
		n := 0
		for has(fmt.Sprintf(format, n)) {
			n++
		}
		return n
	}
	switch {
	case has("decoder.up_blocks.0.resnets.0.conv1.weight") || has("decoder.mid_block.resnets.0.conv1.weight"):
		k := &keys{f: f, layout: Diffusers, levels: count("decoder.up_blocks.%d.resnets.0.conv1.weight")}
		k.legacy = has("decoder.mid_block.attentions.0.query.weight") ||
			(has("decoder.mid_block.attentions.0.proj_attn.weight") && !has("decoder.mid_block.attentions.0.to_out.0.weight"))
		return k, nil
	case has("decoder.conv_in.weight"):
		return &keys{f: f, layout: LDM, levels: count("decoder.up.%d.block.0.conv1.weight")}, nil
	case has(LDMPrefix + "decoder.conv_in.weight"):
		return &keys{f: f, layout: LDM, prefix: LDMPrefix, levels: count(LDMPrefix + "decoder.up.%d.block.0.conv1.weight")}, nil
	}
	if parts := checkpoint.SDParts(f); len(parts) > 0 {
		return nil, fmt.Errorf("vae: %s: the Stable Diffusion checkpoint has no VAE decoder (%sdecoder.*); it holds %s", f.Path, LDMPrefix, strings.Join(parts, " and "))
	}
	return nil, fmt.Errorf("vae: %s: not an AutoencoderKL checkpoint: no %q (LDM), %q (whole SD checkpoint) or %q (diffusers)",
		f.Path, "decoder.conv_in.weight", LDMPrefix+"decoder.conv_in.weight", "decoder.up_blocks.0.resnets.0.conv1.weight")
}

// decoderKeys are the file's tensors that belong to the decoder path (checked for unexpected
// names); the encoder, quant_conv, the loss and, in a whole SD checkpoint, the UNet and the text
// encoder are ignored.
func (k *keys) decoderKeys() map[string]*checkpoint.Tensor {
	out := map[string]*checkpoint.Tensor{}
	for name, t := range k.f.Tensors {
		rest, ok := strings.CutPrefix(name, k.prefix)
		if ok && (strings.HasPrefix(rest, "decoder.") || strings.HasPrefix(rest, "post_quant_conv.")) {
			out[name] = t
		}
	}
	return out
}

// InferConfig reads the architecture off a checkpoint in either layout: the number of levels and
// each level's channels (ch·ch_mult[i]) from the ResBlock convs, num_res_blocks from level 0's
// blocks, z_channels from conv_in, the latent (embed) channels from post_quant_conv, out_ch from
// conv_out, and attention wherever AttnBlock weights sit.
func InferConfig(f *checkpoint.File) (Config, Layout, error) {
	k, err := detect(f)
	if err != nil {
		return Config{}, 0, err
	}
	c, err := k.config()
	return c, k.layout, err
}

func (k *keys) config() (Config, error) {
	f := k.f
	has := func(ldm string) bool { n, _ := k.name(ldm); t, ok := f.Tensors[n]; return ok && t != nil }
	conv := func(ldm string) ([]int, error) { // a conv weight [O, C, kh, kw]
		n, _ := k.name(ldm)
		t, ok := f.Tensors[n]
		if !ok || t == nil {
			return nil, fmt.Errorf("vae: %s: missing tensor %q (a conv weight [C_out, C_in, kh, kw])", f.Path, n)
		}
		if len(t.Shape) != 4 {
			return nil, fmt.Errorf("vae: %s: tensor %q has shape %s, want a conv weight [C_out, C_in, kh, kw]", f.Path, n, checkpoint.Shape(t.Shape))
		}
		return t.Shape, nil
	}
	if k.levels == 0 { // (k.name needs a level to map onto)
		n := k.prefix + "decoder.up.0.block.0.conv1.weight"
		if k.layout == Diffusers {
			n = "decoder.up_blocks.0.resnets.0.conv1.weight"
		}
		return Config{}, fmt.Errorf("vae: %s: missing tensor %q: no decoder level found", f.Path, n)
	}
	c := Config{Channels: make([]int, k.levels), LevelAttn: make([]bool, k.levels)}
	for i := range k.levels {
		w, err := conv(fmt.Sprintf("decoder.up.%d.block.0.conv1.weight", i))
		if err != nil {
			return Config{}, err
		}
		c.Channels[i] = w[0]
		c.LevelAttn[i] = has(fmt.Sprintf("decoder.up.%d.attn.0.q.weight", i))
	}
	for has(fmt.Sprintf("decoder.up.0.block.%d.conv1.weight", c.NumResBlocks+1)) {
		c.NumResBlocks++
	}
	in, err := conv("decoder.conv_in.weight")
	if err != nil {
		return Config{}, err
	}
	c.ZChannels = in[1]
	c.EmbedDim = c.ZChannels
	if pq, err := conv("post_quant_conv.weight"); err == nil {
		c.EmbedDim = pq[1]
	} // else CheckShapes reports it with the shape it should have
	out, err := conv("decoder.conv_out.weight")
	if err != nil {
		return Config{}, err
	}
	c.OutChannels = out[0]
	c.MidAttn = has("decoder.mid.attn_1.q.weight")
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("vae: %s: %w", f.Path, err)
	}
	return c, nil
}

// ExpectedShapes lists every decoder tensor of the configuration under its LDM name with its
// PyTorch shape (1×1 convs [O, C, 1, 1]).
func (c Config) ExpectedShapes() map[string][]int {
	m := map[string][]int{}
	conv := func(name string, out, in, k int) {
		m[name+".weight"] = []int{out, in, k, k}
		m[name+".bias"] = []int{out}
	}
	norm := func(name string, ch int) {
		m[name+".weight"] = []int{ch}
		m[name+".bias"] = []int{ch}
	}
	res := func(name string, in, out int) {
		norm(name+".norm1", in)
		conv(name+".conv1", out, in, 3)
		norm(name+".norm2", out)
		conv(name+".conv2", out, out, 3)
		if in != out {
			conv(name+".nin_shortcut", out, in, 1)
		}
	}
	attn := func(name string, ch int) {
		norm(name+".norm", ch)
		for _, p := range []string{"q", "k", "v", "proj_out"} {
			conv(name+"."+p, ch, ch, 1)
		}
	}
	L := c.Levels()
	mid := c.Channels[L-1]
	conv("post_quant_conv", c.ZChannels, c.EmbedDim, 1)
	conv("decoder.conv_in", mid, c.ZChannels, 3)
	res("decoder.mid.block_1", mid, mid)
	if c.MidAttn {
		attn("decoder.mid.attn_1", mid)
	}
	res("decoder.mid.block_2", mid, mid)
	in := mid
	for i := L - 1; i >= 0; i-- {
		out := c.Channels[i]
		for j := range c.NumResBlocks + 1 {
			res(fmt.Sprintf("decoder.up.%d.block.%d", i, j), in, out)
			in = out
			if c.LevelAttn[i] {
				attn(fmt.Sprintf("decoder.up.%d.attn.%d", i, j), out)
			}
		}
		if i != 0 {
			conv(fmt.Sprintf("decoder.up.%d.upsample.conv", i), out, out, 3)
		}
	}
	norm("decoder.norm_out", in)
	conv("decoder.conv_out", c.OutChannels, in, 3)
	return m
}

// check reports every missing, misshapen or unexpected decoder tensor of the file in one error,
// under the file's own key names and layout.
func (k *keys) check(c Config) error {
	want := map[string][]int{}
	for ldm, shape := range c.ExpectedShapes() {
		name, linear := k.name(ldm)
		if linear {
			shape = shape[:2]
		}
		want[name] = shape
	}
	model := fmt.Sprintf("%s (%s layout)", c, k.layout)
	if err := checkpoint.CheckShapes(k.f.Path, k.decoderKeys(), want, model, nil); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	return nil
}

// weightArgs reads the decoder weights into backend tensors in graph order (paramOrder) and
// returns the index of each LDM parameter name. 3×3 conv kernels become [3, 3, C, O] (HWIO: the
// backend convolution's channels-last kernel, and as a [9C, O] matrix the im2col product's); 1×1
// convs and Linear weights become [O, C].
func (k *keys) weightArgs(c Config) ([]any, map[string]int, error) {
	shapes := c.ExpectedShapes()
	order := c.paramOrder()
	args := make([]any, 0, len(order))
	index := make(map[string]int, len(order))
	for _, ldm := range order {
		name, _ := k.name(ldm)
		t := k.f.Tensors[name]
		data, err := t.Float32()
		if err != nil {
			return nil, nil, fmt.Errorf("vae: %s: tensor %q: %w", k.f.Path, name, err)
		}
		for i, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("vae: %s: tensor %q holds a non-finite value (%v) at flat index %d", k.f.Path, name, v, i)
			}
		}
		shape := shapes[ldm]
		var x *tensors.Tensor
		switch {
		case len(shape) == 4 && shape[2] == 1: // 1×1 conv or Linear: [O, C]
			x = tensors.FromFlatDataAndDimensions(data, shape[0], shape[1])
		case len(shape) == 4: // k×k conv, OIHW
			O, C, kh, kw := shape[0], shape[1], shape[2], shape[3]
			out := make([]float32, len(data))
			for o := range O {
				for ci := range C {
					for y := range kh {
						for xx := range kw {
							v := data[((o*C+ci)*kh+y)*kw+xx]
							out[((y*kw+xx)*C+ci)*O+o] = v
						}
					}
				}
			}
			x = tensors.FromFlatDataAndDimensions(out, kh, kw, C, O)
		default: // biases and norm parameters [C]
			x = tensors.FromFlatDataAndDimensions(append([]float32(nil), data...), shape...)
		}
		index[ldm] = len(args)
		args = append(args, x)
	}
	return args, index, nil
}

// paramOrder is the sorted list of LDM parameter names (the order of the graph's weight inputs).
func (c Config) paramOrder() []string {
	return slices.Sorted(maps.Keys(c.ExpectedShapes()))
}

// New checks a checkpoint (either layout) against the configuration read off it and puts the
// decoder weights on the backend.
func New(b backends.Backend, f *checkpoint.File) (*Decoder, error) {
	return newDecoder(b, f, nativeConv(b))
}

func newDecoder(b backends.Backend, f *checkpoint.File, native bool) (*Decoder, error) {
	if b == nil {
		return nil, fmt.Errorf("vae: no backend")
	}
	k, err := detect(f)
	if err != nil {
		return nil, err
	}
	c, err := k.config()
	if err != nil {
		return nil, err
	}
	if err := k.check(c); err != nil {
		return nil, err
	}
	args, index, err := k.weightArgs(c)
	if err != nil {
		return nil, err
	}
	return &Decoder{Config: c, Layout: k.layout, Path: f.Path, ScaleFactor: ScaleFactor,
		backend: b, native: native, args: args, index: index}, nil
}

// Load reads an AutoencoderKL checkpoint (safetensors or PyTorch .pt/.ckpt/.bin; LDM keys, a whole
// SD checkpoint's first_stage_model.*, or diffusers keys), infers the decoder's architecture and
// puts it on the backend.
func Load(b backends.Backend, path string) (*Decoder, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	d, err := New(b, f)
	if err != nil {
		return nil, err
	}
	if d.Hash, err = checkpoint.FileHash(path); err != nil {
		return nil, err
	}
	return d, nil
}
