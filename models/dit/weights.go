package dit

import (
	"fmt"
	"math"
	"strconv"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/layers"
)

// weights are the model parameters as backend tensors, in the order the graphs take them.
// Linear weights are transposed to [in, out] once here so every graph multiplies x·W.
type weights struct {
	embed  []*tensors.Tensor   // conv W, conv b, pos_embed, t0 W, t0 b, t2 W, t2 b, label table
	blocks [][]*tensors.Tensor // per block: ada W, ada b, qkv W, qkv b, proj W, proj b, fc1 W, fc1 b, fc2 W, fc2 b
	final  []*tensors.Tensor   // ada W, ada b, linear W, linear b
}

func (w *weights) embedArgs() []any      { return asArgs(w.embed) }
func (w *weights) blockArgs(b int) []any { return asArgs(w.blocks[b]) }
func (w *weights) finalArgs() []any      { return asArgs(w.final) }
func asArgs(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// ExpectedShapes lists every state-dict key of the reference model with its shape (PyTorch layout).
func (c Config) ExpectedShapes() map[string][]int {
	D, p, C, F := c.Hidden, c.PatchSize, c.InChannels, FreqEmbedSize
	m := map[string][]int{
		"pos_embed":                             {1, c.Tokens(), D},
		"x_embedder.proj.weight":                {D, C, p, p},
		"x_embedder.proj.bias":                  {D},
		"t_embedder.mlp.0.weight":               {D, F},
		"t_embedder.mlp.0.bias":                 {D},
		"t_embedder.mlp.2.weight":               {D, D},
		"t_embedder.mlp.2.bias":                 {D},
		"y_embedder.embedding_table.weight":     {c.NumClasses + 1, D},
		"final_layer.adaLN_modulation.1.weight": {2 * D, D},
		"final_layer.adaLN_modulation.1.bias":   {2 * D},
		"final_layer.linear.weight":             {p * p * c.OutChannels(), D},
		"final_layer.linear.bias":               {p * p * c.OutChannels()},
	}
	H := c.MLPHidden()
	for i := range c.Depth {
		b := fmt.Sprintf("blocks.%d.", i)
		m[b+"attn.qkv.weight"] = []int{3 * D, D}
		m[b+"attn.qkv.bias"] = []int{3 * D}
		m[b+"attn.proj.weight"] = []int{D, D}
		m[b+"attn.proj.bias"] = []int{D}
		m[b+"mlp.fc1.weight"] = []int{H, D}
		m[b+"mlp.fc1.bias"] = []int{H}
		m[b+"mlp.fc2.weight"] = []int{D, H}
		m[b+"mlp.fc2.bias"] = []int{D}
		m[b+"adaLN_modulation.1.weight"] = []int{6 * D, D}
		m[b+"adaLN_modulation.1.bias"] = []int{6 * D}
	}
	return m
}

// InferConfig reads the architecture off a state dict. The number of heads cannot be inferred
// and is taken from the argument. The label table is assumed to hold a null row (as every DiT
// trained with class dropout does).
func InferConfig(f *checkpoint.File, heads int) (Config, error) {
	sh, err := checkpoint.Ranks(f, "a DiT checkpoint", map[string]int{"x_embedder.proj.weight": 4, "y_embedder.embedding_table.weight": 2,
		"final_layer.linear.weight": 2, "blocks.0.mlp.fc1.weight": 2})
	if err != nil {
		return Config{}, err
	}
	conv, table, fin, fc1 := sh["x_embedder.proj.weight"], sh["y_embedder.embedding_table.weight"], sh["final_layer.linear.weight"], sh["blocks.0.mlp.fc1.weight"]
	c := Config{Hidden: conv[0], InChannels: conv[1], PatchSize: conv[2], Heads: heads, NumClasses: table[0] - 1}
	c.MLPRatio = float64(fc1[0]) / float64(c.Hidden)
	for c.Depth = 0; ; c.Depth++ {
		if _, ok := f.Tensors[fmt.Sprintf("blocks.%d.attn.qkv.weight", c.Depth)]; !ok {
			break
		}
	}
	if pos, ok := f.Tensors["pos_embed"]; ok && len(pos.Shape) == 3 {
		g := int(math.Round(math.Sqrt(float64(pos.Shape[1]))))
		if g*g != pos.Shape[1] {
			return Config{}, fmt.Errorf("%s: pos_embed has %d tokens, not a square grid", f.Path, pos.Shape[1])
		}
		c.InputSize = g * c.PatchSize
	} else {
		return Config{}, fmt.Errorf("%s: tensor \"pos_embed\" is missing or not [1, N, D]; pass the input size explicitly", f.Path)
	}
	pp := c.PatchSize * c.PatchSize
	switch {
	case c.PatchSize == 0 || fin[0]%pp != 0:
		return Config{}, fmt.Errorf("%s: final_layer.linear.weight has %d outputs, not a multiple of patch² = %d", f.Path, fin[0], pp)
	case fin[0]/pp == 2*c.InChannels:
		c.LearnSigma = true
	case fin[0]/pp != c.InChannels:
		return Config{}, fmt.Errorf("%s: final layer gives %d channels per pixel, want %d or %d (learned sigma)", f.Path, fin[0]/pp, c.InChannels, 2*c.InChannels)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	return c, nil
}

// CheckWeights reports every missing, extra or misshapen tensor in one error (in key order).
func (c Config) CheckWeights(f *checkpoint.File) error {
	return checkpoint.CheckShapes(f.Path, f.Tensors, c.ExpectedShapes(), c.String(), nil)
}

// New puts the weights of a checked state dict on a backend.
func New(b backends.Backend, c Config, f *checkpoint.File) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := c.CheckWeights(f); err != nil {
		return nil, err
	}
	w := &weights{}
	ld := layers.NewLoader(f)
	load := ld.Append
	load(&w.embed, "x_embedder.proj.weight^T", "x_embedder.proj.bias", "pos_embed",
		"t_embedder.mlp.0.weight^T", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight^T", "t_embedder.mlp.2.bias",
		"y_embedder.embedding_table.weight")
	w.blocks = make([][]*tensors.Tensor, c.Depth)
	for i := range c.Depth {
		p := "blocks." + strconv.Itoa(i) + "."
		load(&w.blocks[i], p+"adaLN_modulation.1.weight^T", p+"adaLN_modulation.1.bias", p+"attn.qkv.weight^T", p+"attn.qkv.bias",
			p+"attn.proj.weight^T", p+"attn.proj.bias", p+"mlp.fc1.weight^T", p+"mlp.fc1.bias", p+"mlp.fc2.weight^T", p+"mlp.fc2.bias")
	}
	load(&w.final, "final_layer.adaLN_modulation.1.weight^T", "final_layer.adaLN_modulation.1.bias",
		"final_layer.linear.weight^T", "final_layer.linear.bias")
	if err := ld.Err(); err != nil {
		return nil, err
	}
	m := &Model{Config: c, w: w}
	m.ex = executor.New(b, "dit", m)
	return m, nil
}

// Load reads a checkpoint (safetensors or PyTorch .pt; a training checkpoint's EMA weights),
// infers the architecture and puts the model on the backend. heads must be given (or come from
// a preset); it cannot be read off the weights.
func Load(b backends.Backend, path string, heads int) (*Model, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	c, err := InferConfig(f, heads)
	if err != nil {
		return nil, err
	}
	return New(b, c, f)
}
