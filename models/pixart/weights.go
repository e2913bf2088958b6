package pixart

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/layers"
)

// weights are the model parameters as backend tensors, in the order the graphs take them.
// Linear weights are transposed to [in, out] once here so every graph multiplies x·W.
type weights struct {
	embed  []*tensors.Tensor   // patch W, b, pos_embed, t MLP ×4, t_block W, b, y_proj fc1 W, b, fc2 W, b (+ micro-condition MLPs ×8)
	blocks [][]*tensors.Tensor // per block: see Model.BlockWeights
	final  []*tensors.Tensor   // scale_shift_table, linear W, b
	null   []float32           // y_embedder.y_embedding [L, C] (nil in the diffusers layout)
}

func (w *weights) embedArgs() []any { return anyOf(w.embed) }
func (w *weights) finalArgs() []any { return anyOf(w.final) }
func anyOf(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// diffusersKeys maps the diffusers PixArtTransformer2DModel names to the official ones (the
// fused qkv and kv projections are split there: see joinSplit).
var diffusersKeys = []struct{ from, to string }{
	{"pos_embed.proj.", "x_embedder.proj."},
	{"adaln_single.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."},
	{"adaln_single.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."},
	{"adaln_single.emb.resolution_embedder.linear_1.", "csize_embedder.mlp.0."},
	{"adaln_single.emb.resolution_embedder.linear_2.", "csize_embedder.mlp.2."},
	{"adaln_single.emb.aspect_ratio_embedder.linear_1.", "ar_embedder.mlp.0."},
	{"adaln_single.emb.aspect_ratio_embedder.linear_2.", "ar_embedder.mlp.2."},
	{"adaln_single.linear.", "t_block.1."},
	{"caption_projection.linear_1.", "y_embedder.y_proj.fc1."},
	{"caption_projection.linear_2.", "y_embedder.y_proj.fc2."},
	{"proj_out.", "final_layer.linear."},
	{"scale_shift_table", "final_layer.scale_shift_table"},
}

var diffusersBlockKeys = []struct{ from, to string }{
	{"attn1.to_out.0.", "attn.proj."},
	{"attn2.to_q.", "cross_attn.q_linear."},
	{"attn2.to_out.0.", "cross_attn.proj."},
	{"ff.net.0.proj.", "mlp.fc1."},
	{"ff.net.2.", "mlp.fc2."},
	{"scale_shift_table", "scale_shift_table"},
}

// officialLayout returns the state dict under the official key names: unchanged if it already
// uses them; renamed, with the split projections concatenated, if it is a diffusers
// PixArtTransformer2DModel (optionally under a "transformer." prefix).
func officialLayout(f *checkpoint.File) (*checkpoint.File, error) {
	if _, ok := f.Tensors["x_embedder.proj.weight"]; ok {
		return f, nil
	}
	src := map[string]*checkpoint.Tensor{}
	for k, t := range f.Tensors {
		src[strings.TrimPrefix(k, "transformer.")] = t
	}
	if _, ok := src["pos_embed.proj.weight"]; !ok {
		return nil, fmt.Errorf("%s: not a PixArt-α checkpoint: neither x_embedder.proj.weight (official) nor pos_embed.proj.weight (diffusers) is present", f.Path)
	}
	out := &checkpoint.File{Path: f.Path, Tensors: map[string]*checkpoint.Tensor{}, Metadata: f.Metadata}
	for k, t := range src {
		if rest, ok := strings.CutPrefix(k, "transformer_blocks."); ok {
			i, tail, _ := strings.Cut(rest, ".")
			for _, r := range diffusersBlockKeys {
				if suf, ok := strings.CutPrefix(tail, r.from); ok || tail == r.from {
					out.Tensors["blocks."+i+"."+r.to+suf] = t
				}
			}
			continue
		}
		for _, r := range diffusersKeys {
			if suf, ok := strings.CutPrefix(k, r.from); ok || k == r.from {
				out.Tensors[r.to+suf] = t
			}
		}
	}
	for i := 0; ; i++ {
		p := "transformer_blocks." + strconv.Itoa(i) + "."
		if _, ok := src[p+"attn1.to_q.weight"]; !ok {
			break
		}
		for _, part := range []string{"weight", "bias"} {
			q := "blocks." + strconv.Itoa(i) + "."
			if err := joinSplit(f.Path, src, out.Tensors, q+"attn.qkv."+part, p+"attn1.to_q."+part, p+"attn1.to_k."+part, p+"attn1.to_v."+part); err != nil {
				return nil, err
			}
			if err := joinSplit(f.Path, src, out.Tensors, q+"cross_attn.kv_linear."+part, p+"attn2.to_k."+part, p+"attn2.to_v."+part); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// joinSplit concatenates split projections along the output axis into the official fused one.
func joinSplit(path string, src, dst map[string]*checkpoint.Tensor, to string, from ...string) error {
	var data []float32
	var shape []int
	for _, k := range from {
		t, ok := src[k]
		if !ok {
			return fmt.Errorf("%s: diffusers PixArt checkpoint lacks %q", path, k)
		}
		v, err := t.Float32()
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %w", path, k, err)
		}
		if shape == nil {
			shape = append([]int(nil), t.Shape...)
		} else {
			shape[0] += t.Shape[0]
		}
		data = append(data, v...)
	}
	dst[to] = checkpoint.NewF32(data, shape...)
	return nil
}

// ExpectedShapes lists every state-dict key of the official model with its shape (PyTorch
// layout). pos_embed is recomputed (PixArtMS computes it per resolution), so it is optional.
func (c Config) ExpectedShapes() map[string][]int {
	D, p, C, F, H := c.Hidden, c.PatchSize, c.InChannels, layers.FreqEmbedSize, c.MLPHidden()
	m := map[string][]int{
		"x_embedder.proj.weight":        {D, C, p, p},
		"x_embedder.proj.bias":          {D},
		"t_embedder.mlp.0.weight":       {D, F},
		"t_embedder.mlp.0.bias":         {D},
		"t_embedder.mlp.2.weight":       {D, D},
		"t_embedder.mlp.2.bias":         {D},
		"t_block.1.weight":              {6 * D, D},
		"t_block.1.bias":                {6 * D},
		"y_embedder.y_proj.fc1.weight":  {D, c.CaptionChannels},
		"y_embedder.y_proj.fc1.bias":    {D},
		"y_embedder.y_proj.fc2.weight":  {D, D},
		"y_embedder.y_proj.fc2.bias":    {D},
		"final_layer.scale_shift_table": {2, D},
		"final_layer.linear.weight":     {p * p * c.OutChannels(), D},
		"final_layer.linear.bias":       {p * p * c.OutChannels()},
		"y_embedder.y_embedding":        {c.MaxLength, c.CaptionChannels},
		"pos_embed":                     {1, c.Tokens(), D},
		"csize_embedder.mlp.0.weight":   {D / 3, F},
		"csize_embedder.mlp.0.bias":     {D / 3},
		"csize_embedder.mlp.2.weight":   {D / 3, D / 3},
		"csize_embedder.mlp.2.bias":     {D / 3},
		"ar_embedder.mlp.0.weight":      {D / 3, F},
		"ar_embedder.mlp.0.bias":        {D / 3},
		"ar_embedder.mlp.2.weight":      {D / 3, D / 3},
		"ar_embedder.mlp.2.bias":        {D / 3},
	}
	if !c.MicroConditions {
		for k := range m {
			if strings.HasPrefix(k, "csize_") || strings.HasPrefix(k, "ar_") {
				delete(m, k)
			}
		}
	}
	for i := range c.Depth {
		b := fmt.Sprintf("blocks.%d.", i)
		m[b+"scale_shift_table"] = []int{6, D}
		m[b+"attn.qkv.weight"] = []int{3 * D, D}
		m[b+"attn.qkv.bias"] = []int{3 * D}
		m[b+"attn.proj.weight"] = []int{D, D}
		m[b+"attn.proj.bias"] = []int{D}
		m[b+"cross_attn.q_linear.weight"] = []int{D, D}
		m[b+"cross_attn.q_linear.bias"] = []int{D}
		m[b+"cross_attn.kv_linear.weight"] = []int{2 * D, D}
		m[b+"cross_attn.kv_linear.bias"] = []int{2 * D}
		m[b+"cross_attn.proj.weight"] = []int{D, D}
		m[b+"cross_attn.proj.bias"] = []int{D}
		m[b+"mlp.fc1.weight"] = []int{H, D}
		m[b+"mlp.fc1.bias"] = []int{H}
		m[b+"mlp.fc2.weight"] = []int{D, H}
		m[b+"mlp.fc2.bias"] = []int{D}
	}
	return m
}

// optional are keys a checkpoint may lack: the recomputed pos_embed and the null caption (the
// diffusers layout keeps neither).
func optional(key string) bool { return key == "pos_embed" || key == "y_embedder.y_embedding" }

// InferConfig reads the architecture off a state dict in the official layout (see
// officialLayout). heads cannot be inferred: 0 means PixArt-XL's 16 for hidden 1152 and an error
// otherwise. imageSize > 0 overrides the input size (PixArtMS checkpoints are resolution-free;
// the official ones otherwise hold pos_embed, whose token count gives it).
func InferConfig(f *checkpoint.File, heads, imageSize int) (Config, error) {
	sh, err := checkpoint.Ranks(f, "a PixArt-α checkpoint", map[string]int{"x_embedder.proj.weight": 4, "blocks.0.mlp.fc1.weight": 2,
		"y_embedder.y_proj.fc1.weight": 2, "final_layer.linear.weight": 2})
	if err != nil {
		return Config{}, err
	}
	conv, fc1, yfc1, fin := sh["x_embedder.proj.weight"], sh["blocks.0.mlp.fc1.weight"], sh["y_embedder.y_proj.fc1.weight"], sh["final_layer.linear.weight"]
	c := Config{Hidden: conv[0], InChannels: conv[1], PatchSize: conv[2], Heads: heads, CaptionChannels: yfc1[1],
		MaxLength: 120, LeweiScale: 1}
	c.MLPRatio = float64(fc1[0]) / float64(c.Hidden)
	if c.Heads == 0 {
		if c.Hidden != 1152 {
			return Config{}, fmt.Errorf("%s: hidden size %d: give the number of heads (only PixArt-XL's 1152 → 16 is known)", f.Path, c.Hidden)
		}
		c.Heads = 16
	}
	for c.Depth = 0; ; c.Depth++ {
		if _, ok := f.Tensors[fmt.Sprintf("blocks.%d.attn.qkv.weight", c.Depth)]; !ok {
			break
		}
	}
	if y, ok := f.Tensors["y_embedder.y_embedding"]; ok && len(y.Shape) == 2 {
		c.MaxLength = y.Shape[0]
	}
	_, c.MicroConditions = f.Tensors["csize_embedder.mlp.0.weight"]
	switch pos, ok := f.Tensors["pos_embed"]; {
	case imageSize > 0:
		if imageSize%8 != 0 {
			return Config{}, fmt.Errorf("image size %d is not a multiple of 8", imageSize)
		}
		c.InputSize = imageSize / 8
	case ok && len(pos.Shape) == 3:
		g := int(math.Round(math.Sqrt(float64(pos.Shape[1]))))
		if g*g != pos.Shape[1] {
			return Config{}, fmt.Errorf("%s: pos_embed has %d tokens, not a square grid", f.Path, pos.Shape[1])
		}
		c.InputSize = g * c.PatchSize
	default:
		return Config{}, fmt.Errorf("%s: no pos_embed to read the resolution from: give the image size", f.Path)
	}
	// The official configs: lewei_scale 1 up to 512 px, 2 at 1024 (diffusers: latent/64, at least 1).
	c.LeweiScale = float64(max(c.InputSize/64, 1))
	pp := c.PatchSize * c.PatchSize
	switch {
	case c.PatchSize == 0 || fin[0]%pp != 0:
		return Config{}, fmt.Errorf("%s: final_layer.linear.weight has %d outputs, not a multiple of patch² = %d", f.Path, fin[0], pp)
	case fin[0]/pp == 2*c.InChannels:
		c.PredSigma = true
	case fin[0]/pp != c.InChannels:
		return Config{}, fmt.Errorf("%s: final layer gives %d channels per pixel, want %d or %d (predicted sigma)", f.Path, fin[0]/pp, c.InChannels, 2*c.InChannels)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	return c, nil
}

// CheckWeights reports every missing, extra or misshapen tensor in one error (in key order).
func (c Config) CheckWeights(f *checkpoint.File) error {
	want := c.ExpectedShapes()
	for k := range want {
		if _, ok := f.Tensors[k]; !ok && optional(k) {
			delete(want, k)
		}
	}
	return checkpoint.CheckShapes(f.Path, f.Tensors, want, c.String(), nil)
}

// New puts the weights of a checked state dict (official or diffusers layout) on a backend.
func New(b backends.Backend, c Config, f *checkpoint.File) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	f, err := officialLayout(f)
	if err != nil {
		return nil, err
	}
	if err := c.CheckWeights(f); err != nil {
		return nil, err
	}
	w := &weights{}
	ld := layers.NewLoader(f)
	load := ld.Append
	g := c.Grid()
	pos := tensors.FromFlatDataAndDimensions(layers.PosEmbed(c.Hidden, g, g, float64(g), c.LeweiScale), 1, c.Tokens(), c.Hidden)
	load(&w.embed, "x_embedder.proj.weight^T", "x_embedder.proj.bias")
	w.embed = append(w.embed, pos)
	load(&w.embed, "t_embedder.mlp.0.weight^T", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight^T", "t_embedder.mlp.2.bias",
		"t_block.1.weight^T", "t_block.1.bias",
		"y_embedder.y_proj.fc1.weight^T", "y_embedder.y_proj.fc1.bias", "y_embedder.y_proj.fc2.weight^T", "y_embedder.y_proj.fc2.bias")
	if c.MicroConditions {
		load(&w.embed, "csize_embedder.mlp.0.weight^T", "csize_embedder.mlp.0.bias", "csize_embedder.mlp.2.weight^T", "csize_embedder.mlp.2.bias",
			"ar_embedder.mlp.0.weight^T", "ar_embedder.mlp.0.bias", "ar_embedder.mlp.2.weight^T", "ar_embedder.mlp.2.bias")
	}
	w.blocks = make([][]*tensors.Tensor, c.Depth)
	for i := range c.Depth {
		p := "blocks." + strconv.Itoa(i) + "."
		load(&w.blocks[i], p+"scale_shift_table", p+"attn.qkv.weight^T", p+"attn.qkv.bias", p+"attn.proj.weight^T", p+"attn.proj.bias",
			p+"cross_attn.q_linear.weight^T", p+"cross_attn.q_linear.bias", p+"cross_attn.kv_linear.weight^T", p+"cross_attn.kv_linear.bias",
			p+"cross_attn.proj.weight^T", p+"cross_attn.proj.bias", p+"mlp.fc1.weight^T", p+"mlp.fc1.bias", p+"mlp.fc2.weight^T", p+"mlp.fc2.bias")
	}
	load(&w.final, "final_layer.scale_shift_table", "final_layer.linear.weight^T", "final_layer.linear.bias")
	if err := ld.Err(); err != nil {
		return nil, err
	}
	if y, ok := f.Tensors["y_embedder.y_embedding"]; ok {
		if w.null, err = y.Float32(); err != nil {
			return nil, fmt.Errorf("%s: tensor \"y_embedder.y_embedding\": %w", f.Path, err)
		}
	}
	m := &Model{Config: c, w: w}
	m.ex = executor.New(b, "pixart", m)
	return m, nil
}

// Load reads a checkpoint (the official .pth/.safetensors or a diffusers transformer), infers
// the architecture (heads and image size as InferConfig) and puts the model on the backend.
func Load(b backends.Backend, path string, heads, imageSize int) (*Model, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	if f, err = officialLayout(f); err != nil {
		return nil, err
	}
	c, err := InferConfig(f, heads, imageSize)
	if err != nil {
		return nil, err
	}
	return New(b, c, f)
}
