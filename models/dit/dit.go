// Package dit is the Diffusion Transformer of Peebles & Xie ("Scalable Diffusion Models with
// Transformers"), written to reproduce the reference models.py exactly, and exposing every block's
// attention and MLP to acceleration methods through the hook surface.
//
// The network, top to bottom:
//
//	x [B,C,H,W] ──patchify (conv p×p, stride p)──► tokens [B,N,D] + fixed 2-D sin-cos pos_embed
//	t ──sinusoid (256, cos first)──► MLP ──┐
//	y ──label table (row NumClasses = null)──┴─► c = t_emb + y_emb
//	repeat Depth times (adaLN-Zero block):
//	    shift/scale/gate ×2 = Linear(SiLU(c))
//	    x += gate_msa · Attn(LN(x)·(1+scale_msa) + shift_msa)      ◄─ hook: attention
//	    x += gate_mlp · MLP (LN(x)·(1+scale_mlp) + shift_mlp)      ◄─ hook: MLP
//	final: Linear(LN(x)·(1+scale) + shift) ──unpatchify──► [B, C or 2C, H, W]
//
// The file knows no acceleration method: it supplies the embedders, one block's two modules and
// gated residuals, and the final layer; the executor (harness/executor) carries out every plan,
// one compiled graph per block variant with the block's weights passed as arguments.
package dit

import (
	"fmt"
	"math"
	"sort"
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

// FreqEmbedSize is the width of the sinusoidal timestep features (fixed in the reference).
const FreqEmbedSize = layers.FreqEmbedSize

// Config is the architecture of one DiT.
type Config struct {
	InputSize  int     // latent height = width
	PatchSize  int     // p
	InChannels int     // C
	Hidden     int     // D
	Depth      int     // number of blocks
	Heads      int     // attention heads (not inferable from weights)
	MLPRatio   float64 // MLP hidden = D · MLPRatio
	NumClasses int     // label table has NumClasses+1 rows; the last is the null label
	LearnSigma bool    // output 2C channels (ε and the variance interpolation v)
}

// Grid is the token grid side (InputSize / PatchSize).
func (c Config) Grid() int { return c.InputSize / c.PatchSize }

// Tokens is the number of tokens per image.
func (c Config) Tokens() int { return c.Grid() * c.Grid() }

// OutChannels is C, or 2C with learned sigma.
func (c Config) OutChannels() int {
	if c.LearnSigma {
		return 2 * c.InChannels
	}
	return c.InChannels
}

// MLPHidden is the width of the MLP's hidden layer.
func (c Config) MLPHidden() int { return int(float64(c.Hidden) * c.MLPRatio) }

// NullClass is the label index that means "unconditional".
func (c Config) NullClass() int { return c.NumClasses }

// Validate reports an inconsistent configuration.
func (c Config) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.InputSize <= 0 || c.InputSize%c.PatchSize != 0:
		return fmt.Errorf("input size %d must be a positive multiple of patch size %d", c.InputSize, c.PatchSize)
	case c.InChannels <= 0 || c.Hidden <= 0 || c.Depth <= 0 || c.NumClasses <= 0:
		return fmt.Errorf("channels %d, hidden %d, depth %d and classes %d must be positive", c.InChannels, c.Hidden, c.Depth, c.NumClasses)
	case c.Heads <= 0 || c.Hidden%c.Heads != 0:
		return fmt.Errorf("hidden size %d is not divisible by %d heads", c.Hidden, c.Heads)
	case c.Hidden%4 != 0:
		return fmt.Errorf("hidden size %d must be divisible by 4 (2-D sin-cos positions)", c.Hidden)
	case c.MLPHidden() <= 0:
		return fmt.Errorf("MLP ratio %g gives an empty MLP", c.MLPRatio)
	}
	return nil
}

// String is the model's one-line description.
func (c Config) String() string {
	sigma := ""
	if c.LearnSigma {
		sigma = ", learned sigma"
	}
	return fmt.Sprintf("DiT depth %d, hidden %d, %d heads, patch %d, input %dx%dx%d, %d classes%s",
		c.Depth, c.Hidden, c.Heads, c.PatchSize, c.InChannels, c.InputSize, c.InputSize, c.NumClasses, sigma)
}

// presets are the reference DiT_models table (depth, hidden, heads).
var presets = map[string][3]int{
	"S": {12, 384, 6}, "B": {12, 768, 12}, "L": {24, 1024, 16}, "XL": {28, 1152, 16},
}

// PresetNames lists the named presets, e.g. "DiT-XL/2".
func PresetNames() []string {
	var names []string
	for s := range presets {
		for _, p := range []int{2, 4, 8} {
			names = append(names, fmt.Sprintf("DiT-%s/%d", s, p))
		}
	}
	sort.Strings(names)
	return names
}

// Preset returns a named configuration ("DiT-XL/2", ...) for a given image size in pixels
// (latent = image/8, 4 channels, 1000 ImageNet classes, learned sigma, as the reference).
func Preset(name string, imageSize int) (Config, error) {
	var size string
	var patch int
	if _, err := fmt.Sscanf(strings.Replace(strings.TrimPrefix(name, "DiT-"), "/", " ", 1), "%s %d", &size, &patch); err != nil {
		return Config{}, fmt.Errorf("unknown DiT preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	p, ok := presets[size]
	if !ok || (patch != 2 && patch != 4 && patch != 8) || !strings.HasPrefix(name, "DiT-") {
		return Config{}, fmt.Errorf("unknown DiT preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	if imageSize <= 0 || imageSize%8 != 0 {
		return Config{}, fmt.Errorf("image size %d must be a positive multiple of 8", imageSize)
	}
	c := Config{InputSize: imageSize / 8, PatchSize: patch, InChannels: 4, Depth: p[0], Hidden: p[1], Heads: p[2],
		MLPRatio: 4, NumClasses: 1000, LearnSigma: true}
	return c, c.Validate()
}

// Layout is what the model exposes to acceleration methods.
func (c Config) Layout() hook.Layout {
	return hook.Layout{Depth: c.Depth, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: c.Tokens(),
		GridH: c.Grid(), GridW: c.Grid(), Hidden: c.Hidden, Heads: c.Heads}
}

// Model is a DiT with its weights resident on a backend. Plans are carried out by the executor;
// this file only supplies the network's graphs.
type Model struct {
	Config
	w  *weights
	ex *executor.Executor
}

// Options steer one forward pass.
type Options = hook.Options

// Spec is the data layout of the model.
func (c Config) Spec() hook.Spec {
	return hook.Spec{Channels: c.InChannels, Height: c.InputSize, Width: c.InputSize, LearnSigma: c.LearnSigma, NumClasses: c.NumClasses}
}

// Forward runs the model: x is [B, C, H, W] flattened NCHW, t the original (0..999 scale)
// timesteps, y the labels (NumClasses = null). It returns [B, OutChannels, H, W] flattened.
func (m *Model) Forward(x []float32, t []float64, y []int64, opt Options) ([]float32, error) {
	B := len(t)
	c := m.Config
	if B == 0 || len(y) != B {
		return nil, fmt.Errorf("forward: %d timesteps and %d labels (need the same positive count)", B, len(y))
	}
	if want := B * c.InChannels * c.InputSize * c.InputSize; len(x) != want {
		return nil, fmt.Errorf("forward: x has %d values, want %d = %d×%d×%d×%d", len(x), want, B, c.InChannels, c.InputSize, c.InputSize)
	}
	labels := make([]int32, B)
	for i, v := range y {
		if v < 0 || v > int64(c.NumClasses) {
			return nil, fmt.Errorf("forward: label %d of row %d out of range [0, %d] (%d = null)", v, i, c.NumClasses, c.NumClasses)
		}
		labels[i] = int32(v)
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
	err := gx.Catch(func() { out = m.forward(x, t, labels, plan, opt) })
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return out, nil
}

func (m *Model) forward(x []float32, t []float64, labels []int32, plan *hook.Plan, opt Options) []float32 {
	c := m.Config
	B := len(t)
	probe := opt.Probe
	tfreq := layers.TimestepFeatures(t, layers.FreqEmbedSize)
	if probe != nil {
		probe("t_freq", tensors.FromFlatDataAndDimensions(tfreq, B, FreqEmbedSize))
	}
	emb := m.ex.Family(fmt.Sprintf("embed/probe=%t", probe != nil), func(in []*Node) []*Node { return m.embedGraph(in, probe != nil) })
	args := []any{tensors.FromFlatDataAndDimensions(x, B, c.InChannels, c.InputSize, c.InputSize),
		tensors.FromFlatDataAndDimensions(tfreq, B, FreqEmbedSize), tensors.FromFlatDataAndDimensions(labels, B)}
	outs := emb.Run(append(args, m.w.embedArgs()...)...)
	h, cond := outs[0], outs[1]
	if probe != nil {
		for i, name := range []string{"x_embed", "c", "t_emb", "y_emb"} {
			probe(name, outs[i])
		}
		for _, o := range outs[2:] {
			o.MustFinalizeAll()
		}
	}

	h, cached := m.ex.Blocks(h, []*tensors.Tensor{cond}, plan, opt)

	fin := m.ex.Family(fmt.Sprintf("final/probe=%t", probe != nil), func(in []*Node) []*Node { return m.finalGraph(in, probe != nil) })
	outs = fin.Run(append([]any{h, cond}, m.w.finalArgs()...)...)
	if probe != nil {
		probe("final_tokens", outs[1])
		probe("final_adaln", outs[2])
		outs[1].MustFinalizeAll()
		outs[2].MustFinalizeAll()
	}
	if !cached {
		h.MustFinalizeAll()
	}
	cond.MustFinalizeAll()
	if probe != nil {
		probe("out", outs[0])
	}
	res := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].MustFinalizeAll()
	return res
}

// Backend is the backend the model's weights live on.
func (m *Model) Backend() backends.Backend { return m.ex.Backend() }

// CompileTime is the time spent compiling the model's graphs so far.
func (m *Model) CompileTime() time.Duration { return m.ex.CompileTime() }

// GraphCount reports how many graph families have been built.
func (m *Model) GraphCount() int {
	families, _ := m.ex.Compiled()
	return families
}

// ---- graphs -------------------------------------------------------------------------------

// embedGraph: inputs x, t_freq, y, then the embedder weights. Outputs tokens, c (and with probe
// t_emb, y_emb).
func (m *Model) embedGraph(in []*Node, probe bool) []*Node {
	x, tfreq, y := in[0], in[1], in[2]
	w := in[3:]
	convW, convB, pos, t0W, t0B, t2W, t2B, table := w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
	p := m.PatchSize
	// Patchify: the reference's conv with kernel = stride = p is a matmul over non-overlapping
	// patches; token n = row·grid + col, patch features ordered (c, u, v) like the OIHW kernel
	// (flattened to [C·p·p, D] at load). The pure-Go backend's convolution is ~30× slower.
	B, g := x.Shape().Dimensions[0], m.Grid()
	patches := TransposeAllAxes(Reshape(x, B, m.InChannels, g, p, g, p), 0, 2, 4, 1, 3, 5)
	h := layers.Linear(Reshape(patches, B, m.Tokens(), m.InChannels*p*p), convW, convB)
	h = Add(h, pos)

	tEmb := layers.Linear(activations.Swish(layers.Linear(tfreq, t0W, t0B)), t2W, t2B)
	yEmb := Gather(table, InsertAxes(y, -1))
	cond := Add(tEmb, yEmb)
	if probe {
		return []*Node{h, cond, tEmb, yEmb}
	}
	return []*Node{h, cond}
}

// BlockWeights are block b's weights: ada W, ada b, qkv W, qkv b, proj W, proj b, fc1 W, fc1 b,
// fc2 W, fc2 b (linear weights [in, out]).
func (m *Model) BlockWeights(b int) []*tensors.Tensor { return m.w.blocks[b] }

// Block is one adaLN-Zero block: shift/scale/gate ×2 = Linear(SiLU(c)), then
// x += gate_msa·Attn(layers.Modulate(LN(x))) and x += gate_mlp·MLP(layers.Modulate(LN(x))).
func (m *Model) Block(w, cond []*Node) executor.Block {
	ada := layers.Linear(activations.Swish(cond[0]), w[0], w[1])
	return &block{m: m, w: w, ada: ada, mod: Split(ada, -1, 6)}
}

type block struct {
	m   *Model
	w   []*Node
	ada *Node
	mod []*Node // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
}

// Module 0 is the attention, 1 the MLP; both read the pre-norm stream. A partial MLP computes
// the selected tokens only; attention is never partial on DiT (every method here reuses it whole).
func (b *block) Module(i int, x, rows *Node, side hook.TokenScore) (out, info *Node) {
	w, mod := b.w, b.mod
	if i == 0 {
		if rows != nil {
			panic("dit: a partial attention is not supported")
		}
		return b.m.attention(layers.Modulate(layers.LayerNorm(x), mod[0], mod[1]), w[2], w[3], w[4], w[5], side)
	}
	shift, scale := mod[3], mod[4]
	if rows != nil {
		x = executor.GatherRows(x, rows)
	}
	return layers.Linear(layers.GeluTanh(layers.Linear(layers.Modulate(layers.LayerNorm(x), shift, scale), w[6], w[7])), w[8], w[9]), nil
}

// Residual is the adaLN-Zero gated residual x + gate·out.
func (b *block) Residual(i int, x, out *Node) (next, added *Node) {
	gate := b.mod[2+3*i]
	added = Mul(layers.ExpandTo(InsertAxes(gate, 1), out), out)
	return Add(x, added), added
}

// Input is the attention's input, modulate(LN(x), shift_msa, scale_msa) (TeaCache's statistic).
func (b *block) Input(x *Node) *Node { return layers.Modulate(layers.LayerNorm(x), b.mod[0], b.mod[1]) }

// Probes: the block's adaLN output.
func (b *block) Probes() []executor.Named { return []executor.Named{{Name: "adaln", Node: b.ada}} }

// attention is timm's Attention as DiT uses it: fused qkv, q scaled before q·kᵀ, explicit softmax,
// heads concatenated head-major, then proj. As side information it reduces the probabilities to
// the attention each token received (column sums of the head-average) or returns the value
// norms ‖v‖ [B, heads, N], inside the graph.
func (m *Model) attention(h, qkvW, qkvB, projW, projB *Node, side hook.TokenScore) (out, info *Node) {
	d := h.Shape().Dimensions
	B, N, D := d[0], d[1], d[2]
	hd := D / m.Heads
	qkv := TransposeAllAxes(Reshape(layers.Linear(h, qkvW, qkvB), B, N, 3, m.Heads, hd), 2, 0, 3, 1, 4) // [3,B,H,N,hd]
	parts := Split(qkv, 0, 3)
	q, k, v := Squeeze(parts[0], 0), Squeeze(parts[1], 0), Squeeze(parts[2], 0)
	q = MulScalar(q, math.Pow(float64(hd), -0.5))
	probs := layers.SoftmaxLast(Einsum("bhqd,bhkd->bhqk", q, k))
	o := Einsum("bhqk,bhkd->bhqd", probs, v)
	o = Reshape(Transpose(o, 1, 2), B, N, D)
	switch side {
	case hook.ScoreAttention:
		info = ReduceSum(ReduceMean(probs, 1), 1)
	case hook.ScoreValueNorm:
		info = Sqrt(ReduceSum(Square(v), -1))
	}
	return layers.Linear(o, projW, projB), info
}

// finalGraph: inputs x, c and the final-layer weights; outputs the image [B, Cout, H, W] (and with
// probe the final tokens and the final adaLN output).
func (m *Model) finalGraph(in []*Node, probe bool) []*Node {
	x, cond := in[0], in[1]
	adaW, adaB, linW, linB := in[2], in[3], in[4], in[5]
	ada := layers.Linear(activations.Swish(cond), adaW, adaB)
	mod := Split(ada, -1, 2)
	tok := layers.Linear(layers.Modulate(layers.LayerNorm(x), mod[0], mod[1]), linW, linB) // [B, N, p·p·Cout]
	// Unpatchify: feature f = (u·p + v)·Cout + ch → pixel (ch, i·p+u, j·p+v).
	B, g, p, co := x.Shape().Dimensions[0], m.Grid(), m.PatchSize, m.OutChannels()
	img := TransposeAllAxes(Reshape(tok, B, g, g, p, p, co), 0, 5, 1, 3, 2, 4)
	img = Reshape(img, B, co, g*p, g*p)
	if probe {
		return []*Node{img, tok, ada}
	}
	return []*Node{img}
}
