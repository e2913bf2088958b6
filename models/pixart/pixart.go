// Package pixart is PixArt-α (Chen et al., "PixArt-α: Fast Training of Diffusion Transformer for
// Photorealistic Text-to-Image Synthesis"), written to reproduce the official PixArt-alpha
// `PixArt`/`PixArtMS` models exactly, and exposing every block's self-attention, cross-attention
// and MLP to acceleration methods through the hook surface.
//
// The network, top to bottom:
//
//	x [B,C,H,W] ──patchify (conv p×p, stride p)──► tokens [B,N,D] + fixed 2-D sin-cos pos_embed
//	t ──sinusoid (256, cos first)──► MLP ──► t_emb (+ size and aspect-ratio embeddings, 1024-MS)
//	t_emb ──SiLU, Linear(D, 6D)──► t0       (adaLN-single: one projection for every block)
//	caption features y [B,L,4096] ──fc1, GELU-tanh, fc2──► y_proj [B,L,D]; padding tokens masked
//	repeat Depth times:
//	    shift/scale/gate ×2 = scale_shift_table + t0
//	    x += gate_msa · Attn(LN(x)·(1+scale_msa) + shift_msa)      ◄─ hook: attention
//	    x += CrossAttn(x, y_proj)   (no norm, no gate)             ◄─ hook: cross-attention
//	    x += gate_mlp · MLP (LN(x)·(1+scale_mlp) + shift_mlp)      ◄─ hook: MLP
//	final: shift, scale = scale_shift_table + t_emb; Linear(LN(x)·(1+scale) + shift) ──unpatchify──►
//
// The official cross-attention flattens the batch into one sequence of queries over the packed
// valid caption tokens with a block-diagonal mask; here each row attends to its own caption with
// the padding masked out, the same arithmetic without the packing.
//
// The file knows no acceleration method: the executor (harness/executor) carries out every plan.
package pixart

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"

	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
	"github.com/cachebench/cachebench/models/layers"
)

// Config is the architecture of one PixArt-α transformer.
type Config struct {
	InputSize       int     // latent height = width
	PatchSize       int     // p
	InChannels      int     // C
	Hidden          int     // D
	Depth           int     // number of blocks
	Heads           int     // attention heads (not inferable from weights)
	MLPRatio        float64 // MLP hidden = D · MLPRatio
	CaptionChannels int     // width of the caption features (T5-XXL: 4096)
	MaxLength       int     // caption tokens (model_max_length; the null caption's length)
	PredSigma       bool    // output 2C channels (ε and the variance values)
	LeweiScale      float64 // position divisor (1 at 256/512 px, 2 at 1024 px)
	MicroConditions bool    // PixArtMS: resolution and aspect-ratio embeddings added to t_emb
}

// Grid is the token grid side (InputSize / PatchSize).
func (c Config) Grid() int { return c.InputSize / c.PatchSize }

// Tokens is the number of tokens per image.
func (c Config) Tokens() int { return c.Grid() * c.Grid() }

// OutChannels is C, or 2C with predicted sigma.
func (c Config) OutChannels() int {
	if c.PredSigma {
		return 2 * c.InChannels
	}
	return c.InChannels
}

// MLPHidden is the width of the MLP's hidden layer.
func (c Config) MLPHidden() int { return int(float64(c.Hidden) * c.MLPRatio) }

// Validate reports an inconsistent configuration.
func (c Config) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.InputSize <= 0 || c.InputSize%c.PatchSize != 0:
		return fmt.Errorf("input size %d must be a positive multiple of patch size %d", c.InputSize, c.PatchSize)
	case c.InChannels <= 0 || c.Hidden <= 0 || c.Depth <= 0:
		return fmt.Errorf("channels %d, hidden %d and depth %d must be positive", c.InChannels, c.Hidden, c.Depth)
	case c.Heads <= 0 || c.Hidden%c.Heads != 0:
		return fmt.Errorf("hidden size %d is not divisible by %d heads", c.Hidden, c.Heads)
	case c.Hidden%4 != 0:
		return fmt.Errorf("hidden size %d must be divisible by 4 (2-D sin-cos positions)", c.Hidden)
	case c.MicroConditions && c.Hidden%3 != 0:
		return fmt.Errorf("hidden size %d must be divisible by 3 (size and aspect-ratio embeddings)", c.Hidden)
	case c.MLPHidden() <= 0:
		return fmt.Errorf("MLP ratio %g gives an empty MLP", c.MLPRatio)
	case c.CaptionChannels <= 0 || c.MaxLength <= 0:
		return fmt.Errorf("caption width %d and length %d must be positive", c.CaptionChannels, c.MaxLength)
	case c.LeweiScale <= 0:
		return fmt.Errorf("lewei_scale %g must be positive", c.LeweiScale)
	}
	return nil
}

// String is the model's one-line description.
func (c Config) String() string {
	ms := ""
	if c.MicroConditions {
		ms = ", micro-conditions"
	}
	return fmt.Sprintf("PixArt-α depth %d, hidden %d, %d heads, patch %d, input %dx%dx%d, captions %d×%d%s",
		c.Depth, c.Hidden, c.Heads, c.PatchSize, c.InChannels, c.InputSize, c.InputSize, c.MaxLength, c.CaptionChannels, ms)
}

// Preset is PixArt-XL/2 at an image size in pixels (256, 512 or 1024), as the official configs
// and checkpoints: 28 blocks, hidden 1152, 16 heads, T5-XXL captions of 120 tokens; the 1024
// model is PixArtMS (micro-conditions, lewei_scale 2).
func Preset(imageSize int) (Config, error) {
	c := Config{InputSize: imageSize / 8, PatchSize: 2, InChannels: 4, Hidden: 1152, Depth: 28, Heads: 16, MLPRatio: 4,
		CaptionChannels: 4096, MaxLength: 120, PredSigma: true, LeweiScale: 1}
	switch imageSize {
	case 256, 512:
	case 1024:
		c.LeweiScale, c.MicroConditions = 2, true
	default:
		return Config{}, fmt.Errorf("PixArt-XL/2 comes at 256, 512 or 1024 px, not %d", imageSize)
	}
	return c, nil
}

// Layout is what the model exposes to acceleration methods.
func (c Config) Layout() hook.Layout {
	return hook.Layout{Depth: c.Depth, Modules: []hook.Module{hook.Attn, hook.CrossAttn, hook.MLP}, Tokens: c.Tokens(),
		GridH: c.Grid(), GridW: c.Grid(), Hidden: c.Hidden, Heads: c.Heads}
}

// Model is a PixArt-α transformer with its weights resident on a backend and, for sampling, a
// table of captions the labels index.
type Model struct {
	Config
	w        *weights
	ex       *executor.Executor
	captions *Captions
	last     *rowInputs // the conditioning of the last label vector Forward saw
}

// rowInputs is the conditioning of one label vector, assembled on the host and put on the device
// once: a sampling run asks for the same rows at every call.
type rowInputs struct {
	y              []int64
	in             Inputs
	captions, bias *tensors.Tensor // made by the first forward that uses them
}

func (r *rowInputs) release() {
	for _, t := range []*tensors.Tensor{r.captions, r.bias} {
		if t != nil {
			t.MustFinalizeAll()
		}
	}
}

// Captions are the caption features a sampling run's labels refer to: label p < P is caption p;
// the CFG null row of caption p is label P + p (the null caption with p's mask, as PixArt's
// sampler repeats the prompt's mask for the unconditional rows).
type Captions struct {
	Features []float32 // [P, MaxLength, CaptionChannels], zero beyond each caption's length
	Lengths  []int     // valid tokens per caption (a prefix)
	// Null is the unconditional caption [MaxLength, CaptionChannels]; nil means the model's
	// y_embedding (official checkpoints; the diffusers layout has none).
	Null []float32
	// Size is each caption's image height and width in pixels (PixArtMS micro-conditions); nil
	// means the model's native square size.
	Size [][2]float32
}

// SetCaptions installs the caption table that labels index (see Captions).
func (m *Model) SetCaptions(c *Captions) error {
	L, C := m.MaxLength, m.CaptionChannels
	if len(c.Lengths) == 0 || len(c.Features) != len(c.Lengths)*L*C {
		return fmt.Errorf("captions: %d values for %d captions, want %d × %d × %d", len(c.Features), len(c.Lengths), len(c.Lengths), L, C)
	}
	for p, n := range c.Lengths {
		if n < 1 || n > L {
			return fmt.Errorf("captions: caption %d has %d tokens, want 1..%d (the model's maximum length)", p, n, L)
		}
	}
	if c.Null == nil && m.w.null == nil {
		return fmt.Errorf("captions: the weights hold no null caption (y_embedder.y_embedding; the diffusers layout has none): give one")
	}
	if c.Null != nil && len(c.Null) != L*C {
		return fmt.Errorf("captions: null caption has %d values, want %d × %d", len(c.Null), L, C)
	}
	if c.Size != nil && len(c.Size) != len(c.Lengths) {
		return fmt.Errorf("captions: %d image sizes for %d captions", len(c.Size), len(c.Lengths))
	}
	m.captions = c
	if m.last != nil {
		m.last.release()
		m.last = nil
	}
	return nil
}

// Spec is the data layout of the model; its labels are the caption table's indices.
func (m *Model) Spec() hook.Spec {
	n := 0
	if m.captions != nil {
		n = len(m.captions.Lengths)
	}
	return hook.Spec{Channels: m.InChannels, Height: m.InputSize, Width: m.InputSize, LearnSigma: m.PredSigma, NumClasses: n}
}

// NullLabel is the label of the unconditional row that pairs with caption y under CFG.
func (m *Model) NullLabel(y int64) int64 { return int64(m.Spec().NumClasses) + y }

// Forward runs the model on the caption table's entries: labels < P are captions, P + p the null
// caption with caption p's mask (see Captions). x is [B, C, H, W] flattened, t the model times.
func (m *Model) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	c := m.captions
	if c == nil {
		return nil, fmt.Errorf("forward: no captions installed (SetCaptions)")
	}
	if m.last != nil && slices.Equal(m.last.y, y) {
		return m.ForwardCaptions(x, t, m.last.in, opt)
	}
	P := int64(len(c.Lengths))
	L, C := m.MaxLength, m.CaptionChannels
	feats := make([]float32, len(y)*L*C)
	lens := make([]int, len(y))
	var size [][2]float32
	for i, v := range y {
		if v < 0 || v >= 2*P {
			return nil, fmt.Errorf("forward: label %d of row %d out of range [0, %d) (captions, then their null rows)", v, i, 2*P)
		}
		p := v % P
		lens[i] = c.Lengths[p]
		src := c.Features[p*int64(L*C) : (p+1)*int64(L*C)]
		if v >= P {
			src = c.Null
			if src == nil {
				src = m.w.null
			}
		}
		copy(feats[i*L*C:], src)
		if c.Size != nil {
			size = append(size, c.Size[p])
		}
	}
	if m.last != nil {
		m.last.release()
	}
	m.last = &rowInputs{y: slices.Clone(y), in: Inputs{Captions: feats, Lengths: lens, Size: size}}
	return m.ForwardCaptions(x, t, m.last.in, opt)
}

// Inputs are the conditioning of one forward pass.
type Inputs struct {
	Captions []float32    // [B, MaxLength, CaptionChannels]; positions ≥ the length are ignored
	Lengths  []int        // valid caption tokens per row (the attention mask's prefix)
	Size     [][2]float32 // per row image height, width in pixels (micro-conditions; nil = native)
}

// ForwardCaptions runs the model on explicit caption features. It returns [B, OutChannels, H, W].
func (m *Model) ForwardCaptions(x []float32, t []float64, in Inputs, opt hook.Options) ([]float32, error) {
	B := len(t)
	c := m.Config
	L, C := c.MaxLength, c.CaptionChannels
	switch {
	case B == 0 || len(in.Lengths) != B:
		return nil, fmt.Errorf("forward: %d timesteps and %d caption lengths (need the same positive count)", B, len(in.Lengths))
	case len(x) != B*c.InChannels*c.InputSize*c.InputSize:
		return nil, fmt.Errorf("forward: x has %d values, want %d = %d×%d×%d×%d", len(x), B*c.InChannels*c.InputSize*c.InputSize, B, c.InChannels, c.InputSize, c.InputSize)
	case len(in.Captions) != B*L*C:
		return nil, fmt.Errorf("forward: captions have %d values, want %d = %d×%d×%d", len(in.Captions), B*L*C, B, L, C)
	case in.Size != nil && len(in.Size) != B:
		return nil, fmt.Errorf("forward: %d image sizes for %d rows", len(in.Size), B)
	}
	bias := make([]float32, B*L)
	for b, n := range in.Lengths {
		if n < 1 || n > L {
			return nil, fmt.Errorf("forward: row %d has %d caption tokens, want 1..%d", b, n, L)
		}
		for j := n; j < L; j++ {
			bias[b*L+j] = maskedLogit
		}
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("forward: x holds a non-finite value (%v) at flat index %d", v, i)
		}
	}
	plan := opt.Plan
	if plan == nil {
		plan = hook.FullPlan(c.Layout())
	}
	if err := plan.Validate(c.Layout(), opt.Cache, B); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	var out []float32
	err := gx.Catch(func() { out = m.forward(x, t, in, bias, plan, opt) })
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return out, nil
}

// maskedLogit is added to the logits of padding caption tokens: exp underflows to exactly 0, so
// they take no attention, as in the official packed form where they do not exist.
const maskedLogit = -1e30

func (m *Model) forward(x []float32, t []float64, in Inputs, bias []float32, plan *hook.Plan, opt hook.Options) []float32 {
	c := m.Config
	B := len(t)
	probe := opt.Probe
	if probe != nil {
		// The executor names probes by module kind; the golden files call the cross-attention "cross".
		inner := probe
		probe = func(name string, v *tensors.Tensor) { inner(strings.Replace(name, "_cross_attn", "_cross", 1), v) }
		opt.Probe = probe
	}
	tfreq := layers.TimestepFeatures(t, layers.FreqEmbedSize)
	if probe != nil {
		probe("t_freq", tensors.FromFlatDataAndDimensions(tfreq, B, layers.FreqEmbedSize))
	}
	capT, biasT := m.rowTensors(in, bias)
	args := []any{tensors.FromFlatDataAndDimensions(x, B, c.InChannels, c.InputSize, c.InputSize),
		tensors.FromFlatDataAndDimensions(tfreq, B, layers.FreqEmbedSize), capT, biasT}
	if c.MicroConditions {
		args = append(args, tensors.FromFlatDataAndDimensions(m.sizeFeatures(in.Size, B), B, 3, layers.FreqEmbedSize))
	}
	emb := m.ex.Family(fmt.Sprintf("embed/probe=%t", probe != nil), func(in []*Node) []*Node { return m.embedGraph(in, probe != nil) })
	outs := emb.Run(append(args, m.w.embedArgs()...)...)
	h, tEmb, t0, yProj, maskBias := outs[0], outs[1], outs[2], outs[3], outs[4]
	if probe != nil {
		for i, name := range []string{"x_embed", "t_emb", "t_block", "y_proj"} {
			probe(name, outs[i])
		}
	}

	h, cached := m.ex.Blocks(h, []*tensors.Tensor{t0, yProj, maskBias}, plan, opt)

	fin := m.ex.Family(fmt.Sprintf("final/probe=%t", probe != nil), func(in []*Node) []*Node { return m.finalGraph(in, probe != nil) })
	outs = fin.Run(append([]any{h, tEmb}, m.w.finalArgs()...)...)
	if probe != nil {
		probe("final_tokens", outs[1])
		outs[1].MustFinalizeAll()
		probe("out", outs[0])
	}
	if !cached {
		h.MustFinalizeAll()
	}
	for _, t := range []*tensors.Tensor{tEmb, t0, yProj, maskBias} {
		t.MustFinalizeAll()
	}
	res := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].MustFinalizeAll()
	return res
}

// rowTensors are the caption and mask-bias tensors of in: those kept with the last label
// vector when in is its conditioning (the same backing array), new ones otherwise.
func (m *Model) rowTensors(in Inputs, bias []float32) (captions, maskBias *tensors.Tensor) {
	B := len(in.Lengths)
	r := m.last
	if r == nil || len(r.in.Captions) == 0 || len(in.Captions) != len(r.in.Captions) || &in.Captions[0] != &r.in.Captions[0] {
		return tensors.FromFlatDataAndDimensions(in.Captions, B, m.MaxLength, m.CaptionChannels), tensors.FromFlatDataAndDimensions(bias, B, m.MaxLength)
	}
	if r.captions == nil {
		r.captions = tensors.FromFlatDataAndDimensions(in.Captions, B, m.MaxLength, m.CaptionChannels)
		r.bias = tensors.FromFlatDataAndDimensions(bias, B, m.MaxLength)
	}
	return r.captions, r.bias
}

// sizeFeatures are the sinusoidal features of PixArtMS's micro-conditions per row: height,
// width (csize_embedder) and aspect ratio h/w (ar_embedder), [B, 3, 256].
func (m *Model) sizeFeatures(size [][2]float32, B int) []float32 {
	native := float32(m.InputSize * 8)
	out := make([]float32, 0, B*3*layers.FreqEmbedSize)
	for b := range B {
		h, w := native, native
		if size != nil {
			h, w = size[b][0], size[b][1]
		}
		out = append(out, layers.TimestepFeatures([]float64{float64(h), float64(w), float64(h / w)}, layers.FreqEmbedSize)...)
	}
	return out
}

// Backend is the backend the model's weights live on.
func (m *Model) Backend() backends.Backend { return m.ex.Backend() }

// CompileTime is the time spent compiling the model's graphs so far.
func (m *Model) CompileTime() time.Duration { return m.ex.CompileTime() }

// ---- graphs -------------------------------------------------------------------------------

// embedGraph: inputs x, t_freq, captions, mask bias (and the size features with
// micro-conditions), then the embedder weights. Outputs tokens, t_emb, t0, y_proj, mask bias.
func (m *Model) embedGraph(in []*Node, probe bool) []*Node {
	x, tfreq, y, bias := in[0], in[1], in[2], in[3]
	w := in[4:]
	var sizes *Node
	if m.MicroConditions {
		sizes, w = in[4], in[5:]
	}
	convW, convB, pos, t0W, t0B, t2W, t2B, blockW, blockB, fc1W, fc1B, fc2W, fc2B := w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12]
	p := m.PatchSize
	// Patchify as a matmul over non-overlapping patches (see the DiT model: the pure-Go backend's
	// convolution is ~30× slower); patch features ordered (c, u, v) like the OIHW kernel.
	B, g := x.Shape().Dimensions[0], m.Grid()
	patches := TransposeAllAxes(Reshape(x, B, m.InChannels, g, p, g, p), 0, 2, 4, 1, 3, 5)
	h := Add(layers.Linear(Reshape(patches, B, m.Tokens(), m.InChannels*p*p), convW, convB), pos)

	tEmb := layers.Linear(activations.Swish(layers.Linear(tfreq, t0W, t0B)), t2W, t2B)
	if m.MicroConditions {
		// csize_embedder embeds height and width, ar_embedder the aspect ratio, each through its
		// own MLP to D/3 channels; their concatenation is added to t_emb.
		ms := w[13:]
		emb := func(f *Node, w0, b0, w2, b2 *Node) *Node {
			return layers.Linear(activations.Swish(layers.Linear(f, w0, b0)), w2, b2)
		}
		hw := Slice(sizes, AxisRange(), AxisRange(0, 2))
		csize := Reshape(emb(hw, ms[0], ms[1], ms[2], ms[3]), B, 2*m.Hidden/3)
		ar := Reshape(emb(Slice(sizes, AxisRange(), AxisRange(2, 3)), ms[4], ms[5], ms[6], ms[7]), B, m.Hidden/3)
		tEmb = Add(tEmb, Concatenate([]*Node{csize, ar}, -1))
	}
	t0 := layers.Linear(activations.Swish(tEmb), blockW, blockB)
	yProj := layers.Linear(layers.GeluTanh(layers.Linear(y, fc1W, fc1B)), fc2W, fc2B)
	return []*Node{h, tEmb, t0, yProj, Identity(bias)}
}

// BlockWeights are block b's weights: scale_shift_table [6, D], then (W [in, out], b) of qkv,
// proj, q_linear, kv_linear, cross proj, fc1, fc2.
func (m *Model) BlockWeights(b int) []*tensors.Tensor { return m.w.blocks[b] }

// Block is one PixArt-α block under adaLN-single: mods = scale_shift_table + t0 (6 × [B, D]).
func (m *Model) Block(w, cond []*Node) executor.Block {
	t0 := cond[0]
	B, D := t0.Shape().Dimensions[0], m.Hidden
	mods := Add(Reshape(t0, B, 6, D), layers.ExpandTo(InsertAxes(w[0], 0), Reshape(t0, B, 6, D)))
	mod := make([]*Node, 6)
	for i := range mod {
		mod[i] = Reshape(Slice(mods, AxisRange(), AxisElem(i)), B, D)
	}
	return &block{m: m, w: w, mod: mod, y: cond[1], bias: cond[2]}
}

type block struct {
	m       *Model
	w       []*Node
	mod     []*Node // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
	y, bias *Node   // projected captions [B, L, D], mask bias [B, L]
}

// Module 0 is the self-attention (never partial), 1 the cross-attention (reads the raw stream;
// a partial one computes the selected queries over the whole caption), 2 the MLP (pre-norm, a
// partial one gathers its rows before the norm, as the official ToCa code).
func (b *block) Module(i int, x, rows *Node, side hook.TokenScore) (out, info *Node) {
	w, mod, m := b.w, b.mod, b.m
	switch i {
	case 0:
		if rows != nil {
			panic("pixart: a partial self-attention is not supported")
		}
		return m.attention(layers.Modulate(layers.LayerNorm(x), mod[0], mod[1]), w[1], w[2], w[3], w[4], side)
	case 1:
		if rows != nil {
			x = executor.GatherRows(x, rows)
		}
		return m.crossAttention(x, b.y, b.bias, w[5], w[6], w[7], w[8], w[9], w[10], side)
	}
	if rows != nil {
		x = executor.GatherRows(x, rows)
	}
	h := layers.Modulate(layers.LayerNorm(x), mod[3], mod[4])
	return layers.Linear(layers.GeluTanh(layers.Linear(h, w[11], w[12])), w[13], w[14]), nil
}

// Residual adds a module's output: gated for the attention and the MLP, plain for the
// cross-attention.
func (b *block) Residual(i int, x, out *Node) (next, added *Node) {
	added = out
	switch i {
	case 0:
		added = Mul(layers.ExpandTo(InsertAxes(b.mod[2], 1), out), out)
	case 2:
		added = Mul(layers.ExpandTo(InsertAxes(b.mod[5], 1), out), out)
	}
	return Add(x, added), added
}

// Input is the self-attention's input, t2i_modulate(LN(x), shift_msa, scale_msa) (TeaCache's statistic).
func (b *block) Input(x *Node) *Node { return layers.Modulate(layers.LayerNorm(x), b.mod[0], b.mod[1]) }

// Probes: none beyond the modules' outputs (adaLN-single has no per-block projection).
func (b *block) Probes() []executor.Named { return nil }

// attention is the self-attention as the official ToCa code computes it explicitly (fused qkv,
// q scaled before q·kᵀ, softmax, heads concatenated head-major, proj). As side information it
// reduces the probabilities to the attention each token received or returns the value norms.
func (m *Model) attention(h, qkvW, qkvB, projW, projB *Node, side hook.TokenScore) (out, info *Node) {
	d := h.Shape().Dimensions
	B, N, D := d[0], d[1], d[2]
	hd := D / m.Heads
	qkv := TransposeAllAxes(Reshape(layers.Linear(h, qkvW, qkvB), B, N, 3, m.Heads, hd), 2, 0, 3, 1, 4) // [3,B,H,N,hd]
	parts := Split(qkv, 0, 3)
	q, k, v := Squeeze(parts[0], 0), Squeeze(parts[1], 0), Squeeze(parts[2], 0)
	q = MulScalar(q, math.Pow(float64(hd), -0.5))
	probs := layers.SoftmaxLast(Einsum("bhqd,bhkd->bhqk", q, k))
	o := Reshape(Transpose(Einsum("bhqk,bhkd->bhqd", probs, v), 1, 2), B, N, D)
	switch side {
	case hook.ScoreAttention:
		info = ReduceSum(ReduceMean(probs, 1), 1)
	case hook.ScoreValueNorm:
		info = Sqrt(ReduceSum(Square(v), -1))
	}
	return layers.Linear(o, projW, projB), info
}

// crossAttention: q from the image tokens x [B, K, D], k and v (k first) from the row's projected
// caption, padding masked. As side information (ScoreEntropy) it returns each query's share of
// the CFG-paired entropy, e = −Σ_c (p̄_c/2)·ln(p̄_c/2 + 1e-7) with p̄ the head-averaged
// probabilities [B, K] (see hook.ScoreEntropy).
func (m *Model) crossAttention(x, y, bias, qW, qB, kvW, kvB, projW, projB *Node, side hook.TokenScore) (out, info *Node) {
	d := x.Shape().Dimensions
	B, K, D := d[0], d[1], d[2]
	L := y.Shape().Dimensions[1]
	hd := D / m.Heads
	q := Transpose(Reshape(layers.Linear(x, qW, qB), B, K, m.Heads, hd), 1, 2)                       // [B,H,K,hd]
	kv := TransposeAllAxes(Reshape(layers.Linear(y, kvW, kvB), B, L, 2, m.Heads, hd), 2, 0, 3, 1, 4) // [2,B,H,L,hd]
	parts := Split(kv, 0, 2)
	k, v := Squeeze(parts[0], 0), Squeeze(parts[1], 0)
	q = MulScalar(q, math.Pow(float64(hd), -0.5))
	logits := Einsum("bhqd,bhkd->bhqk", q, k)
	logits = Add(logits, layers.ExpandTo(Reshape(bias, B, 1, 1, L), logits))
	probs := layers.SoftmaxLast(logits)
	o := Reshape(Transpose(Einsum("bhqk,bhkd->bhqd", probs, v), 1, 2), B, K, D)
	if side == hook.ScoreEntropy {
		half := MulScalar(ReduceMean(probs, 1), 0.5) // [B, K, L]
		info = Neg(ReduceSum(Mul(half, Log(AddScalar(half, 1e-7))), -1))
	}
	return layers.Linear(o, projW, projB), info
}

// finalGraph: inputs x, t_emb and the final-layer weights; outputs the image [B, Cout, H, W] (and
// with probe the final tokens).
func (m *Model) finalGraph(in []*Node, probe bool) []*Node {
	x, tEmb := in[0], in[1]
	sst, linW, linB := in[2], in[3], in[4]
	B, D := tEmb.Shape().Dimensions[0], m.Hidden
	row := func(i int) *Node { return layers.ExpandTo(Reshape(Slice(sst, AxisElem(i)), 1, D), tEmb) }
	shift, scale := Add(row(0), tEmb), Add(row(1), tEmb)
	tok := layers.Linear(layers.Modulate(layers.LayerNorm(x), shift, scale), linW, linB) // [B, N, p·p·Cout]
	g, p, co := m.Grid(), m.PatchSize, m.OutChannels()
	img := Reshape(TransposeAllAxes(Reshape(tok, B, g, g, p, p, co), 0, 5, 1, 3, 2, 4), B, co, g*p, g*p)
	if probe {
		return []*Node{img, tok}
	}
	return []*Node{img}
}

// GraphCount reports how many graph families have been built.
func (m *Model) GraphCount() int {
	families, _ := m.ex.Compiled()
	return families
}
