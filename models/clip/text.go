package clip

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// SDTextPrefix is where a whole Stable Diffusion v1 checkpoint keeps its text encoder: LDM's
// FrozenCLIPEmbedder stores the Hugging Face CLIPTextModel as cond_stage_model.transformer, so
// the keys below it are HF names (text_model.*).
const SDTextPrefix = "cond_stage_model.transformer."

// TextConfig is the text tower alone: what Stable Diffusion v1 conditions on, and what a
// CLIPTextModel or diffusers text_encoder/ checkpoint holds (no projection, no vision tower).
type TextConfig struct {
	ContextLength int // tokens per row (77)
	VocabSize     int
	Width         int
	Layers        int
	Heads         int // not recorded by the weights; ViT-L/14 (SD v1) has 12
}

// Text is the text tower of a whole CLIP configuration.
func (c Config) Text() TextConfig {
	return TextConfig{ContextLength: c.ContextLength, VocabSize: c.VocabSize, Width: c.TextWidth, Layers: c.TextLayers, Heads: c.TextHeads}
}

// Validate reports an inconsistent configuration.
func (c TextConfig) Validate() error {
	switch {
	case c.Width <= 0 || c.Layers <= 0:
		return fmt.Errorf("clip text config: width %d × %d layers must be positive", c.Width, c.Layers)
	case c.ContextLength < 2 || c.VocabSize <= EOT:
		return fmt.Errorf("clip text config: context length %d must be ≥ 2 and vocab size %d > %d (the EOT id)", c.ContextLength, c.VocabSize, EOT)
	case c.Heads <= 0 || c.Width%c.Heads != 0:
		return fmt.Errorf("clip text config: text heads %d must be positive and divide the text width %d", c.Heads, c.Width)
	}
	return nil
}

// String is the one-line description used in run records and output metadata.
func (c TextConfig) String() string {
	return fmt.Sprintf("CLIP text transformer %d×%d (%d heads), ctx %d, vocab %d", c.Width, c.Layers, c.Heads, c.ContextLength, c.VocabSize)
}

// ExpectedShapes lists the text tower's state-dict keys (OpenAI names) with their shapes.
func (c TextConfig) ExpectedShapes() map[string][]int {
	m := map[string][]int{
		"token_embedding.weight": {c.VocabSize, c.Width},
		"positional_embedding":   {c.ContextLength, c.Width},
		"ln_final.weight":        {c.Width},
		"ln_final.bias":          {c.Width},
	}
	addBlockShapes(m, "transformer.resblocks.", c.Layers, c.Width)
	return m
}

// TextLayout is where in a checkpoint the text tower was found.
type TextLayout int

const (
	// TextOpenAI is OpenAI CLIP's names (token_embedding.weight, transformer.resblocks.*).
	TextOpenAI TextLayout = iota
	// TextHF is Hugging Face's text_model.*: a CLIPModel or CLIPTextModel, or diffusers'
	// text_encoder/model.safetensors.
	TextHF
	// TextSD is a whole Stable Diffusion v1 checkpoint's cond_stage_model.transformer.*.
	TextSD
)

func (l TextLayout) String() string {
	switch l {
	case TextHF:
		return "hf text_model.*"
	case TextSD:
		return "sd " + SDTextPrefix + "*"
	}
	return "openai"
}

// TextEncoder is CLIP's text tower with its weights resident on a backend. HiddenStates is what
// Stable Diffusion v1's UNet cross-attends to.
type TextEncoder struct {
	TextConfig
	// Layout is where the weights were found in Source.
	Layout TextLayout
	// Source is the weights file the encoder was loaded from.
	Source string
	// SHA256 is the hex digest of the weights file ("" for weights built in memory).
	SHA256 string
	// BatchSize bounds the rows of one graph execution (DefaultBatchSize when ≤ 0).
	BatchSize int

	r *runner
	w []*tensors.Tensor // textTower's inputs
}

// ID names the weights for run records: file name and the first 12 hex digits of its SHA-256.
func (e *TextEncoder) ID() string {
	if e.SHA256 == "" {
		return filepath.Base(e.Source)
	}
	return fmt.Sprintf("%s sha256:%s", filepath.Base(e.Source), e.SHA256[:min(12, len(e.SHA256))])
}

// TextEncoder is the model's text tower, sharing its resident weights and compiled graphs.
func (m *Model) TextEncoder() *TextEncoder {
	return &TextEncoder{TextConfig: m.Text(), Source: m.Source, SHA256: m.SHA256, BatchSize: m.BatchSize,
		r: m.r, w: m.w.text[:len(m.w.text)-1]}
}

// HiddenStates is the model's text tower's last hidden state; see TextEncoder.HiddenStates.
func (m *Model) HiddenStates(tokens [][]int32) ([]float32, error) {
	return m.TextEncoder().HiddenStates(tokens)
}

// HiddenStates runs the text tower on full token rows (each exactly ContextLength ids, as
// Tokenizer.TokenizePad makes them) and returns the last hidden state after ln_final,
// [len(tokens), ContextLength, Width] flattened: HF's CLIPTextModel(...).last_hidden_state.
// Rows are not padded here because, unlike the pooled feature, every position's state depends
// on the padding id.
func (e *TextEncoder) HiddenStates(tokens [][]int32) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("clip: no token rows to encode")
	}
	ctx := e.ContextLength
	flat := make([]int32, 0, len(tokens)*ctx)
	for i, row := range tokens {
		if len(row) != ctx {
			return nil, fmt.Errorf("clip: token row %d has %d ids, want exactly %d (pad rows as the text encoder's user does, e.g. TokenizePad(texts, EOT) for Stable Diffusion v1)", i, len(row), ctx)
		}
		for j, id := range row {
			if id < 0 || int(id) >= e.VocabSize {
				return nil, fmt.Errorf("clip: token row %d position %d: id %d outside [0, %d)", i, j, id, e.VocabSize)
			}
		}
		flat = append(flat, row...)
	}
	bs := e.BatchSize
	if bs <= 0 {
		bs = DefaultBatchSize
	}
	out := make([]float32, 0, len(tokens)*ctx*e.Width)
	for start := 0; start < len(tokens); start += bs {
		b := min(bs, len(tokens)-start)
		args := append([]any{tensors.FromFlatDataAndDimensions(flat[start*ctx:(start+b)*ctx], b, ctx)}, asArgs(e.w)...)
		c := e.TextConfig
		outs, err := e.r.run("text/hidden", func(in []*Node) []*Node {
			h, _ := textTower(c, in[0], in[1:], false)
			return []*Node{h}
		}, args)
		if err != nil {
			return nil, err
		}
		out = append(out, outs[0]...)
	}
	return out, nil
}

// NewTextEncoder puts the text tower of a checkpoint on a backend: a whole Stable Diffusion v1
// checkpoint (cond_stage_model.transformer.*), Hugging Face text_model.* (diffusers'
// text_encoder/, CLIPTextModel, CLIPModel) or OpenAI CLIP names; the vision tower and the
// projections, where present, are ignored. The shapes come from the weights, the head count
// from cfg.Heads (cfg's other non-zero fields must agree with the weights).
func NewTextEncoder(b backends.Backend, f *checkpoint.File, cfg TextConfig) (*TextEncoder, error) {
	sd, layout, err := textStateDict(f)
	if err != nil {
		return nil, err
	}
	c, err := inferTextConfig(f.Path, sd, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkpoint.CheckShapes(f.Path, sd, c.ExpectedShapes(), c.String(), nil); err != nil {
		return nil, err
	}
	w, err := residentArgs(f.Path, sd, textTowerKeys(c.Layers))
	if err != nil {
		return nil, err
	}
	return &TextEncoder{TextConfig: c, Layout: layout, Source: f.Path, BatchSize: DefaultBatchSize, r: newRunner(b), w: w}, nil
}

// LoadTextEncoder reads a checkpoint (safetensors or torch.save, e.g. v1-5-pruned-emaonly.ckpt)
// and puts its text tower on the backend (NewTextEncoder), recording the file's SHA-256.
func LoadTextEncoder(b backends.Backend, path string, cfg TextConfig) (*TextEncoder, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	e, err := NewTextEncoder(b, f, cfg)
	if err != nil {
		return nil, err
	}
	if e.SHA256, err = checkpoint.FileHash(path); err != nil {
		return nil, err
	}
	return e, nil
}

// sdLegacyText are text-encoder key prefixes under SDTextPrefix that some SD v1 checkpoints
// store without CLIPTextModel's text_model level (saved from a bare CLIPTextTransformer).
var sdLegacyText = []string{"embeddings.", "encoder.", "final_layer_norm."}

// textStateDict picks the text tower out of f under OpenAI names, and says where it was.
func textStateDict(f *checkpoint.File) (map[string]*checkpoint.Tensor, TextLayout, error) {
	names := f.Names()
	first := func(prefix string) string {
		for _, k := range names {
			if strings.HasPrefix(k, prefix) {
				return k
			}
		}
		return ""
	}
	fromHF := func(hf map[string]*checkpoint.Tensor, where string) (map[string]*checkpoint.Tensor, error) {
		sd, err := HFToOpenAI(hf)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", f.Path, where, err)
		}
		return sd, nil
	}
	if first(SDTextPrefix) != "" {
		hf := map[string]*checkpoint.Tensor{}
		for _, k := range names {
			rest, ok := strings.CutPrefix(k, SDTextPrefix)
			if !ok {
				continue
			}
			for _, p := range sdLegacyText {
				if strings.HasPrefix(rest, p) {
					rest = "text_model." + rest
					break
				}
			}
			hf[rest] = f.Tensors[k]
		}
		sd, err := fromHF(hf, SDTextPrefix+"* (HF text_model names)")
		return sd, TextSD, err
	}
	if k := first("cond_stage_model."); k != "" {
		return nil, 0, fmt.Errorf("clip: no CLIP text encoder (%s*) in %s: its conditioning model has other keys (e.g. %q; SD 2.x's OpenCLIP encoder is not supported)", SDTextPrefix, f.Path, k)
	}
	if first("model.diffusion_model.") != "" || first("first_stage_model.") != "" {
		var parts []string
		for _, p := range []string{"model.diffusion_model.", "first_stage_model."} {
			if first(p) != "" {
				parts = append(parts, p+"*")
			}
		}
		return nil, 0, fmt.Errorf("clip: no CLIP text encoder (%s*) in %s: the Stable Diffusion checkpoint holds only %s", SDTextPrefix, f.Path, strings.Join(parts, " and "))
	}
	if first("text_model.") != "" {
		hf := map[string]*checkpoint.Tensor{}
		for _, k := range names {
			if strings.HasPrefix(k, "text_model.") {
				hf[k] = f.Tensors[k]
			}
		}
		sd, err := fromHF(hf, "text_model.*")
		return sd, TextHF, err
	}
	if _, ok := f.Tensors["token_embedding.weight"]; ok {
		sd := map[string]*checkpoint.Tensor{}
		for _, k := range names {
			if k == "token_embedding.weight" || k == "positional_embedding" ||
				strings.HasPrefix(k, "ln_final.") || strings.HasPrefix(k, "transformer.resblocks.") {
				sd[k] = f.Tensors[k]
			}
		}
		return sd, TextOpenAI, nil
	}
	example := ""
	if len(names) > 0 {
		example = fmt.Sprintf(", e.g. %q", names[0])
	}
	return nil, 0, fmt.Errorf("clip: no CLIP text encoder in %s: want %stext_model.* (a whole SD v1 checkpoint), text_model.* (diffusers text_encoder/, HF CLIP) or OpenAI's token_embedding.weight and transformer.resblocks.* (the file has %d tensors%s)",
		f.Path, SDTextPrefix, len(names), example)
}

// inferTextConfig reads the shapes off an OpenAI-named text state dict and the heads from want.
func inferTextConfig(path string, sd map[string]*checkpoint.Tensor, want TextConfig) (TextConfig, error) {
	shape := func(key string) ([]int, error) {
		t, ok := sd[key]
		if !ok {
			return nil, fmt.Errorf("%s: CLIP text encoder lacks tensor %q", path, key)
		}
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want a matrix", path, key, t.Shape)
		}
		return t.Shape, nil
	}
	tok, err := shape("token_embedding.weight")
	if err != nil {
		return TextConfig{}, err
	}
	pos, err := shape("positional_embedding")
	if err != nil {
		return TextConfig{}, err
	}
	c := TextConfig{VocabSize: tok[0], Width: tok[1], ContextLength: pos[0], Heads: want.Heads,
		Layers: countLayers(sd, "transformer.resblocks.%d.attn.in_proj_weight")}
	if c.Heads <= 0 {
		return TextConfig{}, fmt.Errorf("%s: text heads must be given (the weights do not record them; OpenAI models and SD v1's ViT-L/14 use width/64 = %d)", path, c.Width/64)
	}
	for _, f := range []struct {
		name      string
		got, want int
	}{{"ContextLength", c.ContextLength, want.ContextLength}, {"VocabSize", c.VocabSize, want.VocabSize},
		{"Width", c.Width, want.Width}, {"Layers", c.Layers, want.Layers}} {
		if f.want != 0 && f.want != f.got {
			return TextConfig{}, fmt.Errorf("%s: text config field %s is %d but the weights have %d", path, f.name, f.want, f.got)
		}
	}
	if err := c.Validate(); err != nil {
		return TextConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
