package clip

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// Config is the architecture of an OpenAI ViT CLIP. Shapes are read off the weights; the head
// counts are not, because the state dict does not record them.
type Config struct {
	EmbedDim        int // joint image-text embedding width
	ImageResolution int // input side in pixels
	PatchSize       int
	VisionWidth     int
	VisionLayers    int
	VisionHeads     int // OpenAI models use VisionWidth/64
	ContextLength   int // text tokens per row (77)
	VocabSize       int
	TextWidth       int
	TextLayers      int
	TextHeads       int // OpenAI models use TextWidth/64; the golden tiny model does not
}

// Grid is the number of patches along each image side.
func (c Config) Grid() int { return c.ImageResolution / c.PatchSize }

// ImageTokens is the class token plus one token per patch.
func (c Config) ImageTokens() int { return c.Grid()*c.Grid() + 1 }

// Validate reports an inconsistent configuration.
func (c Config) Validate() error {
	switch {
	case c.EmbedDim <= 0 || c.VisionWidth <= 0 || c.VisionLayers <= 0 || c.TextWidth <= 0 || c.TextLayers <= 0:
		return fmt.Errorf("clip config: embed %d, vision width %d × %d layers, text width %d × %d layers must all be positive",
			c.EmbedDim, c.VisionWidth, c.VisionLayers, c.TextWidth, c.TextLayers)
	case c.PatchSize <= 0 || c.ImageResolution <= 0 || c.ImageResolution%c.PatchSize != 0:
		return fmt.Errorf("clip config: image resolution %d must be a positive multiple of patch size %d", c.ImageResolution, c.PatchSize)
	case c.ContextLength < 2 || c.VocabSize <= EOT:
		return fmt.Errorf("clip config: context length %d must be ≥ 2 and vocab size %d > %d (the EOT id)", c.ContextLength, c.VocabSize, EOT)
	case c.VisionHeads <= 0 || c.VisionWidth%c.VisionHeads != 0:
		return fmt.Errorf("clip config: vision heads %d must be positive and divide the vision width %d", c.VisionHeads, c.VisionWidth)
	case c.TextHeads <= 0 || c.TextWidth%c.TextHeads != 0:
		return fmt.Errorf("clip config: text heads %d must be positive and divide the text width %d", c.TextHeads, c.TextWidth)
	}
	return nil
}

// String is the one-line description used in run records.
func (c Config) String() string {
	return fmt.Sprintf("CLIP ViT %dpx patch %d, vision %d×%d (%d heads), text %d×%d (%d heads), ctx %d, embed %d",
		c.ImageResolution, c.PatchSize, c.VisionWidth, c.VisionLayers, c.VisionHeads,
		c.TextWidth, c.TextLayers, c.TextHeads, c.ContextLength, c.EmbedDim)
}

// presets are OpenAI's released ViT models (clip.available_models()).
var presets = map[string]Config{
	"ViT-B/32":       {EmbedDim: 512, ImageResolution: 224, PatchSize: 32, VisionWidth: 768, VisionLayers: 12, VisionHeads: 12, ContextLength: 77, VocabSize: VocabSize, TextWidth: 512, TextLayers: 12, TextHeads: 8},
	"ViT-B/16":       {EmbedDim: 512, ImageResolution: 224, PatchSize: 16, VisionWidth: 768, VisionLayers: 12, VisionHeads: 12, ContextLength: 77, VocabSize: VocabSize, TextWidth: 512, TextLayers: 12, TextHeads: 8},
	"ViT-L/14":       {EmbedDim: 768, ImageResolution: 224, PatchSize: 14, VisionWidth: 1024, VisionLayers: 24, VisionHeads: 16, ContextLength: 77, VocabSize: VocabSize, TextWidth: 768, TextLayers: 12, TextHeads: 12},
	"ViT-L/14@336px": {EmbedDim: 768, ImageResolution: 336, PatchSize: 14, VisionWidth: 1024, VisionLayers: 24, VisionHeads: 16, ContextLength: 77, VocabSize: VocabSize, TextWidth: 768, TextLayers: 12, TextHeads: 12},
}

// PresetNames lists the named OpenAI architectures.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for k := range presets {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Preset returns a named OpenAI architecture ("ViT-B/32", "ViT-L/14", ...).
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown CLIP preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	return c, nil
}

// ExpectedShapes lists every state-dict key of the OpenAI model with its PyTorch shape.
func (c Config) ExpectedShapes() map[string][]int {
	m := c.Text().ExpectedShapes()
	for k, s := range map[string][]int{
		"visual.conv1.weight":         {c.VisionWidth, 3, c.PatchSize, c.PatchSize},
		"visual.class_embedding":      {c.VisionWidth},
		"visual.positional_embedding": {c.ImageTokens(), c.VisionWidth},
		"visual.ln_pre.weight":        {c.VisionWidth},
		"visual.ln_pre.bias":          {c.VisionWidth},
		"visual.ln_post.weight":       {c.VisionWidth},
		"visual.ln_post.bias":         {c.VisionWidth},
		"visual.proj":                 {c.VisionWidth, c.EmbedDim},
		"text_projection":             {c.TextWidth, c.EmbedDim},
		"logit_scale":                 {},
	} {
		m[k] = s
	}
	addBlockShapes(m, "visual.transformer.resblocks.", c.VisionLayers, c.VisionWidth)
	return m
}

// addBlockShapes adds n residual blocks of width w under prefix (OpenAI names).
func addBlockShapes(m map[string][]int, prefix string, n, w int) {
	for i := range n {
		for k, s := range map[string][]int{
			"attn.in_proj_weight": {3 * w, w}, "attn.in_proj_bias": {3 * w},
			"attn.out_proj.weight": {w, w}, "attn.out_proj.bias": {w},
			"ln_1.weight": {w}, "ln_1.bias": {w}, "ln_2.weight": {w}, "ln_2.bias": {w},
			"mlp.c_fc.weight": {4 * w, w}, "mlp.c_fc.bias": {4 * w},
			"mlp.c_proj.weight": {w, 4 * w}, "mlp.c_proj.bias": {w},
		} {
			m[fmt.Sprintf("%s%d.%s", prefix, i, k)] = s
		}
	}
}

// InferConfig reads every shape field off an OpenAI- or Hugging-Face-named state dict and takes
// the head counts from heads (its other fields, where non-zero, must agree with the weights).
func InferConfig(f *checkpoint.File, heads Config) (Config, error) {
	sd, err := canonical(f)
	if err != nil {
		return Config{}, err
	}
	shape := func(key string, rank int) ([]int, error) {
		t, ok := sd[key]
		if !ok {
			return nil, fmt.Errorf("%s: not a ViT CLIP checkpoint: no tensor %q", f.Path, key)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want rank %d", f.Path, key, t.Shape, rank)
		}
		return t.Shape, nil
	}
	if _, ok := sd["visual.layer1.0.conv1.weight"]; ok {
		return Config{}, fmt.Errorf("%s: ResNet CLIP image encoders are not supported (only ViT)", f.Path)
	}
	var c Config
	conv, err := shape("visual.conv1.weight", 4)
	if err != nil {
		return Config{}, err
	}
	pos, err := shape("visual.positional_embedding", 2)
	if err != nil {
		return Config{}, err
	}
	proj, err := shape("visual.proj", 2)
	if err != nil {
		return Config{}, err
	}
	tok, err := shape("token_embedding.weight", 2)
	if err != nil {
		return Config{}, err
	}
	tpos, err := shape("positional_embedding", 2)
	if err != nil {
		return Config{}, err
	}
	c.VisionWidth, c.PatchSize, c.EmbedDim = conv[0], conv[3], proj[1]
	grid := 0
	for grid*grid < pos[0]-1 {
		grid++
	}
	if grid*grid != pos[0]-1 {
		return Config{}, fmt.Errorf("%s: visual.positional_embedding has %d rows, want 1 + a square number of patches", f.Path, pos[0])
	}
	c.ImageResolution = grid * c.PatchSize
	c.VocabSize, c.TextWidth, c.ContextLength = tok[0], tok[1], tpos[0]
	c.VisionLayers = countLayers(sd, "visual.transformer.resblocks.%d.attn.in_proj_weight")
	c.TextLayers = countLayers(sd, "transformer.resblocks.%d.attn.in_proj_weight")
	c.VisionHeads, c.TextHeads = heads.VisionHeads, heads.TextHeads
	if c.VisionHeads <= 0 || c.TextHeads <= 0 {
		return Config{}, fmt.Errorf("%s: vision heads %d and text heads %d must be given (the weights do not record them; OpenAI models use width/64: %d and %d)",
			f.Path, c.VisionHeads, c.TextHeads, c.VisionWidth/64, c.TextWidth/64)
	}
	if err := agree(c, heads); err != nil {
		return Config{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	return c, nil
}

// agree reports the first non-zero field of want that differs from the inferred c.
func agree(c, want Config) error {
	for _, f := range []struct {
		name      string
		got, want int
	}{
		{"EmbedDim", c.EmbedDim, want.EmbedDim}, {"ImageResolution", c.ImageResolution, want.ImageResolution},
		{"PatchSize", c.PatchSize, want.PatchSize}, {"VisionWidth", c.VisionWidth, want.VisionWidth},
		{"VisionLayers", c.VisionLayers, want.VisionLayers}, {"ContextLength", c.ContextLength, want.ContextLength},
		{"VocabSize", c.VocabSize, want.VocabSize}, {"TextWidth", c.TextWidth, want.TextWidth},
		{"TextLayers", c.TextLayers, want.TextLayers},
	} {
		if f.want != 0 && f.want != f.got {
			return fmt.Errorf("config field %s is %d but the weights have %d", f.name, f.want, f.got)
		}
	}
	return nil
}

func countLayers(sd map[string]*checkpoint.Tensor, format string) int {
	n := 0
	for {
		if _, ok := sd[fmt.Sprintf(format, n)]; !ok {
			return n
		}
		n++
	}
}

// ImageFLOPs is the forward cost of one image: 2 × multiply-adds of the patch convolution, the
// attention and MLP matrix products and the projection (LayerNorm, softmax and activations are
// left out, so the figure compares with a matmul rate).
func (c Config) ImageFLOPs() float64 {
	g2, p, w := float64(c.Grid()*c.Grid()), float64(c.PatchSize), float64(c.VisionWidth)
	return 2*g2*w*3*p*p + float64(c.VisionLayers)*blockFLOPs(float64(c.ImageTokens()), w) + 2*w*float64(c.EmbedDim)
}

// TextFLOPs is the forward cost of one text row of ContextLength tokens, counted as ImageFLOPs.
func (c Config) TextFLOPs() float64 {
	w := float64(c.TextWidth)
	return float64(c.TextLayers)*blockFLOPs(float64(c.ContextLength), w) + 2*w*float64(c.EmbedDim)
}

// blockFLOPs: qkv 3W², out W², MLP 8W² per token, and q·kᵀ and probs·v N·W per token each.
func blockFLOPs(n, w float64) float64 { return 2 * (12*n*w*w + 2*n*n*w) }
