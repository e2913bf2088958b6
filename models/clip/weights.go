package clip

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// jitScalars are the entries OpenAI's TorchScript checkpoints add to the state dict;
// build_model deletes them, and so does the loader.
var jitScalars = map[string]bool{"input_resolution": true, "context_length": true, "vocab_size": true}

// hfBuffers are non-parameter entries of Hugging Face checkpoints (older transformers saved them).
var hfBuffers = map[string]bool{"vision_model.embeddings.position_ids": true, "text_model.embeddings.position_ids": true}

// hfTop maps OpenAI names outside the residual blocks to Hugging Face CLIPModel names.
// Projections are marked ^T: OpenAI stores [in, out] for x @ P, HF a Linear weight [out, in].
var hfTop = map[string]string{
	"visual.conv1.weight":         "vision_model.embeddings.patch_embedding.weight",
	"visual.class_embedding":      "vision_model.embeddings.class_embedding",
	"visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
	"visual.ln_pre.weight":        "vision_model.pre_layrnorm.weight", // sic: HF's spelling
	"visual.ln_pre.bias":          "vision_model.pre_layrnorm.bias",
	"visual.ln_post.weight":       "vision_model.post_layernorm.weight",
	"visual.ln_post.bias":         "vision_model.post_layernorm.bias",
	"visual.proj^T":               "visual_projection.weight",
	"token_embedding.weight":      "text_model.embeddings.token_embedding.weight",
	"positional_embedding":        "text_model.embeddings.position_embedding.weight",
	"ln_final.weight":             "text_model.final_layer_norm.weight",
	"ln_final.bias":               "text_model.final_layer_norm.bias",
	"text_projection^T":           "text_projection.weight",
	"logit_scale":                 "logit_scale",
}

// hfBlock maps the per-block names (after the layer prefix); q, k and v are handled apart.
var hfBlock = map[string]string{
	"attn.out_proj.weight": "self_attn.out_proj.weight",
	"attn.out_proj.bias":   "self_attn.out_proj.bias",
	"ln_1.weight":          "layer_norm1.weight",
	"ln_1.bias":            "layer_norm1.bias",
	"ln_2.weight":          "layer_norm2.weight",
	"ln_2.bias":            "layer_norm2.bias",
	"mlp.c_fc.weight":      "mlp.fc1.weight",
	"mlp.c_fc.bias":        "mlp.fc1.bias",
	"mlp.c_proj.weight":    "mlp.fc2.weight",
	"mlp.c_proj.bias":      "mlp.fc2.bias",
}

var (
	hfLayer     = regexp.MustCompile(`^(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)$`)
	openaiLayer = regexp.MustCompile(`^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$`)
	hfQKV       = regexp.MustCompile(`^self_attn\.([qkv])_proj\.(weight|bias)$`)
)

// isHF reports whether a state dict uses Hugging Face CLIPModel names.
func isHF(names map[string]*checkpoint.Tensor) bool {
	for k := range names {
		if strings.HasPrefix(k, "vision_model.") || strings.HasPrefix(k, "text_model.") || k == "visual_projection.weight" {
			return true
		}
	}
	return false
}

// HFToOpenAI renames a Hugging Face CLIPModel state dict to OpenAI's names: q, k and v are
// stacked into in_proj, and the two projections transposed to [in, out]. Every tensor of the
// result is F32.
func HFToOpenAI(src map[string]*checkpoint.Tensor) (map[string]*checkpoint.Tensor, error) {
	inv := map[string]string{}
	for o, h := range hfTop {
		inv[h] = o
	}
	invBlock := map[string]string{}
	for o, h := range hfBlock {
		invBlock[h] = o
	}
	out := map[string]*checkpoint.Tensor{}
	qkv := map[string]*[3]*checkpoint.Tensor{} // OpenAI in_proj key → q, k, v parts
	for _, name := range slices.Sorted(maps.Keys(src)) {
		t := src[name]
		if hfBuffers[name] {
			continue
		}
		if o, ok := inv[name]; ok {
			if base, tr := strings.CutSuffix(o, "^T"); tr {
				x, err := transpose2D(name, t)
				if err != nil {
					return nil, err
				}
				out[base] = x
			} else {
				x, err := asF32(name, t)
				if err != nil {
					return nil, err
				}
				out[o] = x
			}
			continue
		}
		m := hfLayer.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("tensor %q is not a Hugging Face CLIPModel parameter", name)
		}
		prefix := "transformer.resblocks." + m[2] + "."
		if m[1] == "vision" {
			prefix = "visual." + prefix
		}
		x, err := asF32(name, t)
		if err != nil {
			return nil, err
		}
		if q := hfQKV.FindStringSubmatch(m[3]); q != nil {
			key := prefix + "attn.in_proj_" + q[2]
			if qkv[key] == nil {
				qkv[key] = &[3]*checkpoint.Tensor{}
			}
			qkv[key][strings.Index("qkv", q[1])] = x
			continue
		}
		o, ok := invBlock[m[3]]
		if !ok {
			return nil, fmt.Errorf("tensor %q is not a Hugging Face CLIPModel parameter", name)
		}
		out[prefix+o] = x
	}
	for key, parts := range qkv {
		var data []float32
		var shape []int
		for i, p := range parts {
			if p == nil {
				return nil, fmt.Errorf("%s: the %c_proj tensor is missing (q, k and v must all be present)", key, "qkv"[i])
			}
			if shape == nil {
				shape = append([]int(nil), p.Shape...)
			} else if !slices.Equal(p.Shape, shape) {
				return nil, fmt.Errorf("%s: q, k and v projections have different shapes (%v, %v)", key, shape, p.Shape)
			}
			data = append(data, p.Data.([]float32)...)
		}
		if len(shape) == 0 {
			return nil, fmt.Errorf("%s: q, k and v projections are scalars, want [W, W] weights or [W] biases", key)
		}
		shape[0] *= 3
		out[key] = checkpoint.NewF32(data, shape...)
	}
	return out, nil
}

// OpenAIToHF is the inverse of HFToOpenAI: it splits in_proj into q, k and v and transposes the
// projections to Linear weights. Every tensor of the result is F32.
func OpenAIToHF(src map[string]*checkpoint.Tensor) (map[string]*checkpoint.Tensor, error) {
	out := map[string]*checkpoint.Tensor{}
	for _, name := range slices.Sorted(maps.Keys(src)) {
		t := src[name]
		if jitScalars[name] {
			continue
		}
		if h, ok := hfTop[name]; ok {
			x, err := asF32(name, t)
			if err != nil {
				return nil, err
			}
			out[h] = x
			continue
		}
		if h, ok := hfTop[name+"^T"]; ok {
			x, err := transpose2D(name, t)
			if err != nil {
				return nil, err
			}
			out[h] = x
			continue
		}
		m := openaiLayer.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("tensor %q is not an OpenAI CLIP parameter", name)
		}
		prefix := "text_model.encoder.layers." + m[2] + "."
		if m[1] != "" {
			prefix = "vision_model.encoder.layers." + m[2] + "."
		}
		x, err := asF32(name, t)
		if err != nil {
			return nil, err
		}
		if kind, ok := strings.CutPrefix(m[3], "attn.in_proj_"); ok && (kind == "weight" || kind == "bias") {
			if len(x.Shape) == 0 || x.Shape[0]%3 != 0 {
				return nil, fmt.Errorf("tensor %q has shape %v, want a first dimension divisible by 3 (q, k, v)", name, x.Shape)
			}
			data := x.Data.([]float32)
			part := len(data) / 3
			shape := append([]int{x.Shape[0] / 3}, x.Shape[1:]...)
			for i, c := range "qkv" {
				out[prefix+"self_attn."+string(c)+"_proj."+kind] = checkpoint.NewF32(append([]float32(nil), data[i*part:(i+1)*part]...), shape...)
			}
			continue
		}
		h, ok := hfBlock[m[3]]
		if !ok {
			return nil, fmt.Errorf("tensor %q is not an OpenAI CLIP parameter", name)
		}
		out[prefix+h] = x
	}
	return out, nil
}

// canonical returns the state dict under OpenAI names, without the entries that are not weights.
func canonical(f *checkpoint.File) (map[string]*checkpoint.Tensor, error) {
	if isHF(f.Tensors) {
		sd, err := HFToOpenAI(f.Tensors)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		return sd, nil
	}
	sd := make(map[string]*checkpoint.Tensor, len(f.Tensors))
	for k, t := range f.Tensors {
		if !jitScalars[k] {
			sd[k] = t
		}
	}
	return sd, nil
}

// asF32 returns t with F32 data (F16, BF16 and F64 weights are converted).
func asF32(name string, t *checkpoint.Tensor) (*checkpoint.Tensor, error) {
	if t.DType == checkpoint.F32 {
		if _, ok := t.Data.([]float32); ok {
			return t, nil
		}
	}
	switch t.DType {
	case checkpoint.F32, checkpoint.F16, checkpoint.BF16, checkpoint.F64:
	default:
		return nil, fmt.Errorf("tensor %q has dtype %s, want a float dtype (F32, F16, BF16, F64)", name, t.DType)
	}
	data, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return checkpoint.NewF32(data, t.Shape...), nil
}

// transpose2D swaps the two axes of a matrix (a projection between OpenAI's and HF's layout).
func transpose2D(name string, t *checkpoint.Tensor) (*checkpoint.Tensor, error) {
	x, err := asF32(name, t)
	if err != nil {
		return nil, err
	}
	if len(x.Shape) != 2 {
		return nil, fmt.Errorf("tensor %q has shape %v, want a matrix", name, x.Shape)
	}
	r, c := x.Shape[0], x.Shape[1]
	data := x.Data.([]float32)
	out := make([]float32, len(data))
	for i := range r {
		for j := range c {
			out[j*r+i] = data[i*c+j]
		}
	}
	return checkpoint.NewF32(out, c, r), nil
}

// checkWeights reports every missing, extra or misshapen tensor in one error (in key order).
func (c Config) checkWeights(path string, sd map[string]*checkpoint.Tensor) error {
	return checkpoint.CheckShapes(path, sd, c.ExpectedShapes(), c.String(), nil)
}

// weights are the model parameters as backend tensors in the order the graphs take them;
// Linear weights are transposed to [in, out] so that every graph computes x·W.
type weights struct {
	vision []*tensors.Tensor
	text   []*tensors.Tensor
}

// blockArgs is the order of one residual block's tensors in a graph's inputs.
var blockArgs = []string{"ln_1.weight", "ln_1.bias", "attn.in_proj_weight^T", "attn.in_proj_bias",
	"attn.out_proj.weight^T", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
	"mlp.c_fc.weight^T", "mlp.c_fc.bias", "mlp.c_proj.weight^T", "mlp.c_proj.bias"}

// New puts the weights of a state dict (OpenAI or Hugging Face names) on a backend.
func New(b backends.Backend, c Config, f *checkpoint.File) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	sd, err := canonical(f)
	if err != nil {
		return nil, err
	}
	if err := c.checkWeights(f.Path, sd); err != nil {
		return nil, err
	}
	vision, err := residentArgs(f.Path, sd, append(append([]string{"visual.conv1.weight^P", "visual.class_embedding",
		"visual.positional_embedding", "visual.ln_pre.weight", "visual.ln_pre.bias"},
		blockKeys("visual.transformer.resblocks.", c.VisionLayers)...),
		"visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"))
	if err != nil {
		return nil, err
	}
	text, err := residentArgs(f.Path, sd, append(textTowerKeys(c.TextLayers), "text_projection"))
	if err != nil {
		return nil, err
	}
	w := &weights{vision: vision, text: text}
	scale, err := sd["logit_scale"].Float32()
	if err != nil || len(scale) != 1 {
		return nil, fmt.Errorf("%s: tensor \"logit_scale\" must be one float", f.Path)
	}
	return &Model{Config: c, Source: f.Path, BatchSize: DefaultBatchSize, r: newRunner(b), w: w, logitScale: scale[0]}, nil
}

// blockKeys lists n residual blocks' tensors under prefix in graph-input order.
func blockKeys(prefix string, n int) []string {
	var keys []string
	for i := range n {
		for _, k := range blockArgs {
			keys = append(keys, prefix+strconv.Itoa(i)+"."+k)
		}
	}
	return keys
}

// textTowerKeys is textTower's weight order under OpenAI names.
func textTowerKeys(layers int) []string {
	return append(append([]string{"token_embedding.weight", "positional_embedding"},
		blockKeys("transformer.resblocks.", layers)...), "ln_final.weight", "ln_final.bias")
}

// residentArgs turns the named tensors of an OpenAI-named state dict into graph inputs, in order:
// a "^T" suffix transposes a matrix to [in, out], "^P" flattens a patch kernel [W,3,p,p] to the
// matrix [3·p·p, W]. A non-finite weight is an error rather than NaN features downstream.
func residentArgs(path string, sd map[string]*checkpoint.Tensor, keys []string) ([]*tensors.Tensor, error) {
	out := make([]*tensors.Tensor, 0, len(keys))
	for _, key := range keys {
		name, tr := strings.CutSuffix(key, "^T")
		name, patch := strings.CutSuffix(name, "^P")
		t := sd[name]
		data, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, name, err)
		}
		for i, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%s: tensor %q holds a non-finite value at flat index %d", path, name, i)
			}
		}
		shape := t.Shape
		if patch {
			shape = []int{shape[0], shape[1] * shape[2] * shape[3]}
			tr = true
		}
		if tr {
			x, err := transpose2D(name, checkpoint.NewF32(data, shape...))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			data, shape = x.Data.([]float32), x.Shape
		}
		out = append(out, tensors.FromFlatDataAndDimensions(data, shape...))
	}
	return out, nil
}

// Load reads a checkpoint (safetensors or a torch.save state dict, OpenAI or Hugging Face names),
// infers the architecture, takes the head counts from cfg (a Preset, or a Config with only the
// heads set) and puts the model on the backend. It also records the file's SHA-256 as the
// model id, since scores are only comparable between identical weights.
func Load(b backends.Backend, path string, cfg Config) (*Model, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	c, err := InferConfig(f, cfg)
	if err != nil {
		return nil, err
	}
	m, err := New(b, c, f)
	if err != nil {
		return nil, err
	}
	if m.SHA256, err = checkpoint.FileHash(path); err != nil {
		return nil, err
	}
	return m, nil
}

// FormulaWeights returns OpenAI-named weights from the formula of testdata/clip/README.md
// (SplitMix64 values scaled per key, gain 1): deterministic, bit-reproducible weights for the
// golden test and for benchmarks of architectures whose checkpoint is not at hand.
func FormulaWeights(c Config, seed uint64) *checkpoint.File {
	shapes := c.ExpectedShapes()
	f := &checkpoint.File{Path: fmt.Sprintf("formula(seed=%d)", seed), Tensors: map[string]*checkpoint.Tensor{}}
	for p, key := range slices.Sorted(maps.Keys(shapes)) {
		shape := shapes[key]
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		fill := func(v func(u float64) float64) {
			for i := range data {
				data[i] = float32(v(formulaU(seed, p, i)))
			}
		}
		fanIn := 1
		if len(shape) > 1 {
			for _, d := range shape[1:] {
				fanIn *= d
			}
		}
		isLN := strings.HasPrefix(key, "ln_") || strings.Contains(key, ".ln_")
		switch {
		case key == "logit_scale":
			data[0] = math.Float32frombits(0x402A3151)
		case key == "token_embedding.weight":
			fill(func(u float64) float64 { return 0.02 * u })
		case key == "positional_embedding":
			fill(func(u float64) float64 { return 0.01 * u })
		case key == "visual.class_embedding" || key == "visual.positional_embedding":
			fill(func(u float64) float64 { return 0.1 * u })
		case key == "visual.proj" || key == "text_projection":
			s := math.Sqrt(3.0/float64(shape[0])) * 1.0
			fill(func(u float64) float64 { return u * s })
		case isLN && strings.HasSuffix(key, ".weight"):
			fill(func(u float64) float64 { return 1 + float64(0.1*u) }) // float64(): no fused multiply-add
		case strings.HasSuffix(key, "bias"):
			fill(func(u float64) float64 { return 0.05 * u })
		default:
			s := math.Sqrt(3.0/float64(fanIn)) * 1.0
			fill(func(u float64) float64 { return u * s })
		}
		f.Tensors[key] = checkpoint.NewF32(data, shape...)
	}
	return f
}

// formulaU is output number p·2³² + i + 1 of SplitMix64 from state s, mapped exactly to [−1, 1).
func formulaU(s uint64, p, i int) float64 {
	x := uint64(p)<<32 | uint64(i)
	z := s + (x+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11)*0x1p-52 - 1
}
