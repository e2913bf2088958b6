// Package unet is Stable Diffusion v1's denoiser, the latent-diffusion UNetModel with
// SpatialTransformer cross-attention, written to reproduce the CompVis ldm reference (golden
// test: testdata/sd-unet). It reads top to bottom as the reference's forward:
//
//	t ──sinusoid (model_channels, cos first)──► time_embed: Linear → SiLU → Linear ──► emb
//	x [B,4,h,w] ──input_blocks──► hs (every block's output kept)
//	    input_blocks[0]  conv 3×3 in → model_channels
//	    per level l:     num_res_blocks × (ResBlock [→ SpatialTransformer])
//	                     Downsample (conv 3×3 stride 2) between levels
//	middle_block         ResBlock → SpatialTransformer → ResBlock
//	output_blocks        per level, lowest resolution first, num_res_blocks+1 ×
//	                     cat([h, hs.pop()]) → ResBlock [→ SpatialTransformer] [→ Upsample]
//	out                  GroupNorm → SiLU → conv 3×3 ──► ε [B,4,h,w]
//
//	ResBlock(x, emb)      = skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) + Linear(SiLU(emb)))))
//	                        GroupNorm 32 groups, eps 1e-5; skip is a 1×1 conv when channels change
//	SpatialTransformer(x) = x + proj_out(blocks(proj_in(GN(x)))) on the h·w tokens, GN eps 1e-6
//	BasicTransformerBlock = x += self-attn(LN(x)); x += cross-attn(LN(x), context); x += GEGLU-FF(LN(x))
//
// Each block (input_blocks[i], middle_block, output_blocks[i]) is one compiled graph with its
// weights passed as arguments, so a step can be planned block by block (DeepCache reuses block
// outputs, ToMe/DaTo prune tokens inside the transformers); Blocks lists them. Between blocks
// the feature maps are NHWC device tensors, the layout in which the transformer's tokens are a
// reshape.
//
// On the pure-Go backend each 3×3 convolution is im2col and one matrix product (its own
// convolution is a scalar loop); elsewhere (XLA) the backend's convolution runs.
package unet

import (
	"fmt"
	"math"
	"strings"
	"sync"
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

// Fixed settings of ldm's UNetModel as Stable Diffusion uses it.
const (
	DefaultHeads = 8    // num_heads of SD v1 (dim_head = channels / heads, legacy = False)
	Groups       = 32   // every GroupNorm
	ResEps       = 1e-5 // ResBlock and output GroupNorm (GroupNorm32's default)
	STEps        = 1e-6 // SpatialTransformer GroupNorm
	LNEps        = 1e-5 // transformer LayerNorms
	FFMult       = 4    // GEGLU inner width = FFMult · channels
)

// Config is the architecture of one UNet (ldm's unet_config as far as the weights tell it).
type Config struct {
	InChannels, OutChannels int
	ModelChannels           int
	TimeEmbedDim            int    // 4·model_channels in ldm
	ChannelMult             []int  // per level, level 0 = full resolution
	NumResBlocks            int    // ResBlocks per level on the way down (one more on the way up)
	AttentionLevels         []bool // level l has SpatialTransformers (attention_resolutions holds 2^l)
	TransformerDepth        int
	ContextDim              int
	Heads                   int  // num_heads; dim_head = channels / Heads
	LinearProj              bool // proj_in/proj_out are Linear (SD 2's use_linear_in_transformer), not 1×1 convs
}

// Levels is the number of resolution levels.
func (c Config) Levels() int { return len(c.ChannelMult) }

// Downscale is the ratio of the input side to the lowest resolution's, 2^(levels−1); the latent
// side must be a multiple of it.
func (c Config) Downscale() int { return 1 << (c.Levels() - 1) }

// AttentionResolutions is ldm's attention_resolutions: the downsampling factors 2^l of the levels
// with transformers.
func (c Config) AttentionResolutions() []int {
	var r []int
	for l, a := range c.AttentionLevels {
		if a {
			r = append(r, 1<<l)
		}
	}
	return r
}

// Validate reports a configuration the model cannot run.
func (c Config) Validate() error {
	switch {
	case c.Levels() == 0 || len(c.AttentionLevels) != c.Levels():
		return fmt.Errorf("%d levels with %d attention flags", c.Levels(), len(c.AttentionLevels))
	case c.InChannels <= 0 || c.OutChannels <= 0 || c.ModelChannels <= 0 || c.TimeEmbedDim <= 0 || c.NumResBlocks <= 0:
		return fmt.Errorf("in %d, out %d, model %d, time-embedding %d channels and num_res_blocks %d must be positive",
			c.InChannels, c.OutChannels, c.ModelChannels, c.TimeEmbedDim, c.NumResBlocks)
	case c.TransformerDepth <= 0 || c.ContextDim <= 0:
		return fmt.Errorf("transformer depth %d and context_dim %d must be positive", c.TransformerDepth, c.ContextDim)
	case c.Heads <= 0:
		return fmt.Errorf("%d attention heads: the head count (num_heads, %d in SD v1) must be given, it is not in the weights", c.Heads, DefaultHeads)
	}
	for l, m := range c.ChannelMult {
		ch := m * c.ModelChannels
		switch {
		case m <= 0 || ch%Groups != 0:
			return fmt.Errorf("level %d has %d channels, want a positive multiple of %d (GroupNorm groups)", l, ch, Groups)
		case ch%c.Heads != 0:
			return fmt.Errorf("level %d has %d channels, not divisible by %d heads", l, ch, c.Heads)
		}
	}
	return nil
}

// String is the model's one-line description.
func (c Config) String() string {
	proj := ""
	if c.LinearProj {
		proj = ", linear proj"
	}
	return fmt.Sprintf("UNet: model_channels %d, channel_mult %v, num_res_blocks %d, attention_resolutions %v, depth %d, context %d, %d heads, in %d, out %d, time embedding %d%s",
		c.ModelChannels, c.ChannelMult, c.NumResBlocks, c.AttentionResolutions(), c.TransformerDepth, c.ContextDim, c.Heads,
		c.InChannels, c.OutChannels, c.TimeEmbedDim, proj)
}

// Kind is where a block sits.
type Kind string

// Block kinds.
const (
	Input  Kind = "input"
	Middle Kind = "middle"
	Output Kind = "output"
)

// Layer is one module of a block, named as the reference's classes.
type Layer string

// Layers a block is made of.
const (
	LayerConvIn Layer = "conv"       // the first input block's 3×3 conv
	LayerRes    Layer = "res"        // ResBlock (takes emb)
	LayerAttn   Layer = "attn"       // SpatialTransformer (takes context)
	LayerDown   Layer = "downsample" // 3×3 conv, stride 2
	LayerUp     Layer = "upsample"   // nearest ×2, then 3×3 conv
)

// Block describes one of the UNet's blocks (a TimestepEmbedSequential of the reference).
type Block struct {
	Name   string // LDM name: "input_blocks.3", "middle_block", "output_blocks.1"
	Kind   Kind
	Index  int     // within its kind
	Layers []Layer // in order; module j's parameters are Name.j.*
	// Level is the resolution level of the block's input (0 = full resolution), Factor 2^Level;
	// OutFactor is its output's (Factor·2 after a Downsample, Factor/2 after an Upsample).
	Level, Factor, OutFactor int
	// Channels: the block reads InChannels (plus SkipChannels concatenated after them, output
	// blocks) and writes OutChannels.
	InChannels, SkipChannels, OutChannels int
	// Skip is the input block whose output an output block concatenates (hs.pop()); −1 otherwise.
	Skip int
}

// Has reports whether the block contains a layer of that kind.
func (b Block) Has(l Layer) bool {
	for _, x := range b.Layers {
		if x == l {
			return true
		}
	}
	return false
}

// ProbeName is the golden files' name of the block's output: input_block_3, middle_block, …
func (b Block) ProbeName() string { return strings.Replace(b.Name, "_blocks.", "_block_", 1) }

// Blocks lists the blocks in execution order: input blocks, the middle block, output blocks.
func (c Config) Blocks() []Block {
	mc := c.ModelChannels
	var out []Block
	add := func(b Block) { out = append(out, b) }
	add(Block{Name: "input_blocks.0", Kind: Input, Layers: []Layer{LayerConvIn}, Factor: 1, OutFactor: 1,
		InChannels: c.InChannels, OutChannels: mc, Skip: -1})
	chans := []int{mc} // the channels of each input block's output, as hs will hold them
	ch, ds := mc, 1
	for l, mult := range c.ChannelMult {
		for range c.NumResBlocks {
			layers := []Layer{LayerRes}
			if c.AttentionLevels[l] {
				layers = append(layers, LayerAttn)
			}
			add(Block{Name: fmt.Sprintf("input_blocks.%d", len(out)), Kind: Input, Index: len(out), Layers: layers,
				Level: l, Factor: ds, OutFactor: ds, InChannels: ch, OutChannels: mult * mc, Skip: -1})
			ch = mult * mc
			chans = append(chans, ch)
		}
		if l != c.Levels()-1 {
			add(Block{Name: fmt.Sprintf("input_blocks.%d", len(out)), Kind: Input, Index: len(out), Layers: []Layer{LayerDown},
				Level: l, Factor: ds, OutFactor: 2 * ds, InChannels: ch, OutChannels: ch, Skip: -1})
			chans = append(chans, ch)
			ds *= 2
		}
	}
	add(Block{Name: "middle_block", Kind: Middle, Layers: []Layer{LayerRes, LayerAttn, LayerRes},
		Level: c.Levels() - 1, Factor: ds, OutFactor: ds, InChannels: ch, OutChannels: ch, Skip: -1})
	k := 0
	for l := c.Levels() - 1; l >= 0; l-- {
		for j := range c.NumResBlocks + 1 {
			skip := len(chans) - 1
			b := Block{Name: fmt.Sprintf("output_blocks.%d", k), Kind: Output, Index: k, Layers: []Layer{LayerRes},
				Level: l, Factor: ds, OutFactor: ds, InChannels: ch, SkipChannels: chans[skip], OutChannels: c.ChannelMult[l] * mc, Skip: skip}
			chans = chans[:skip]
			if c.AttentionLevels[l] {
				b.Layers = append(b.Layers, LayerAttn)
			}
			if l > 0 && j == c.NumResBlocks {
				b.Layers = append(b.Layers, LayerUp)
				b.OutFactor = ds / 2
				ds /= 2
			}
			ch = b.OutChannels
			add(b)
			k++
		}
	}
	return out
}

// Model is a UNet with its weights resident on a backend. It may be used from several
// goroutines; passes run one at a time.
type Model struct {
	Config
	Layout Layout // the checkpoint's key layout
	Path   string // the checkpoint it was read from
	Hash   string // the checkpoint file's sha256 (hex; set by Load)

	backend backends.Backend
	native  bool // 3×3 convs with the backend's convolution (else im2col + matmul)
	blocks  []Block
	embedW  *group
	headW   *group
	blockW  []*group

	mu      sync.Mutex
	execs   map[string]*Exec
	seen    map[string]bool
	compile time.Duration
}

// nativeConv tells whether the backend's own convolution should run: everywhere but on the
// pure-Go backend, whose convolution is a scalar loop several times slower than im2col + matmul.
func nativeConv(b backends.Backend) bool {
	return b != nil && !strings.HasPrefix(b.Name(), "SimpleGo")
}

// Backend is the backend the weights live on.
func (m *Model) Backend() backends.Backend { return m.backend }

// Blocks lists the model's blocks in execution order (see Config.Blocks).
func (m *Model) Blocks() []Block { return append([]Block(nil), m.blocks...) }

// CompileTime is the time spent building and compiling graphs so far.
func (m *Model) CompileTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.compile
}

// Options steer one forward pass.
type Options struct {
	// Probe receives named intermediates (NCHW feature maps, [B, N, C] attention outputs) as
	// testdata/sd-unet names them: t_freq, t_emb, input_block_i, middle_block, output_block_i,
	// <block>_attn1 / <block>_attn2 (the first transformer block's self- and cross-attention
	// outputs before the residual; <block>_t<d>_attn1 … for deeper ones), eps.
	Probe hook.Probe
	// Plan, when set, is carried out block by block (see Denoiser.Layout): a skipped block
	// outputs its own cached output (SkipReplace of a single block, DeepCache); a kept block
	// stores its output; a Prune action runs the module of the block's transformer on the kept
	// tokens (ToMeSD, DaTo); Plan.Dynamics keeps ε and its dynamics. Cache holds what persists.
	Plan  *hook.Plan
	Cache *hook.Cache
	// Modules receives the first transformer block's self-attention, cross-attention and
	// feed-forward outputs [B, N, C] of every block with a SpatialTransformer (nil where the
	// block was skipped), as hook.Options.Modules.
	Modules func(block int, module hook.Module, action hook.Action, fresh int, out *tensors.Tensor)
}

// Modules are the token modules of a block's transformer, in the order plans index them.
var Modules = []hook.Module{hook.Attn, hook.CrossAttn, hook.MLP}

// Forward runs the model: x is [B, InChannels, S, S] (flat NCHW, S a multiple of Downscale),
// t the B model timesteps (0…999), context [B, L, ContextDim] (the text encoder's hidden states,
// [uncond | cond] rows under CFG). It returns ε [B, OutChannels, S, S] flat.
func (m *Model) Forward(x []float32, t []float64, context []float32, opt Options) ([]float32, error) {
	B := len(t)
	if B == 0 {
		return nil, fmt.Errorf("unet: forward: no timesteps")
	}
	per := len(x) / B / m.InChannels
	S := int(math.Round(math.Sqrt(float64(per))))
	if len(x) != B*m.InChannels*S*S || S == 0 || S%m.Downscale() != 0 {
		return nil, fmt.Errorf("unet: forward: x has %d values for %d timesteps, want %d×%d×S×S with S a positive multiple of %d",
			len(x), B, B, m.InChannels, m.Downscale())
	}
	if len(context) == 0 || len(context)%(B*m.ContextDim) != 0 {
		return nil, fmt.Errorf("unet: forward: context has %d values, want %d×L×%d (L ≥ 1 tokens)", len(context), B, m.ContextDim)
	}
	L := len(context) / (B * m.ContextDim)
	if m.backend == nil {
		return nil, fmt.Errorf("unet: forward: the model has no weights (unet.Shape counts FLOPs only)")
	}
	for _, in := range []struct {
		name string
		v    []float32
	}{{"x", x}, {"context", context}} {
		for i, v := range in.v {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("unet: forward: %s holds a non-finite value (%v) at flat index %d", in.name, v, i)
			}
		}
	}
	for i, v := range t {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("unet: forward: timestep %d is %v", i, v)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var eps []float32
	err := gx.Catch(func() {
		eps = m.forward(nchwToNHWC(x, B, m.InChannels, S, S), S, t,
			tensors.FromFlatDataAndDimensions(append([]float32(nil), context...), B, L, m.ContextDim), opt)
	})
	if err != nil {
		return nil, fmt.Errorf("unet: forward: %w", err)
	}
	return eps, nil
}

func (m *Model) forward(x []float32, S int, t []float64, context *tensors.Tensor, opt Options) []float32 {
	B := len(t)
	probe, plan, cache := opt.Probe, opt.Plan, opt.Cache
	defer context.MustFinalizeAll()
	tfreq := TimestepFeatures(t, m.ModelChannels)
	if probe != nil {
		keep(probe, "t_freq", tensors.FromFlatDataAndDimensions(tfreq, B, m.ModelChannels))
	}
	emb := m.embed(tfreq, B)
	defer emb.MustFinalizeAll()
	if probe != nil {
		probe("t_emb", emb)
	}
	skipped, kept := make([]bool, len(m.blocks)), make([]bool, len(m.blocks))
	if plan != nil {
		for _, sk := range plan.Skips {
			skipped[sk.From] = true
		}
		for _, sp := range plan.Keep {
			kept[sp.From] = true
		}
	}
	// Every block output lives until the end of the call (the skips need them), then is freed
	// unless the cache took it (a kept block's).
	h := tensors.FromFlatDataAndDimensions(x, B, S, S, m.InChannels)
	temps := []*tensors.Tensor{h}
	var hs []*tensors.Tensor
	for i, bk := range m.blocks {
		var skip *tensors.Tensor
		if bk.Kind == Output {
			skip, hs = hs[len(hs)-1], hs[:len(hs)-1]
		}
		var next *tensors.Tensor
		if skipped[i] {
			next = cache.Span(hook.Span{From: i, To: i}).Out
			if opt.Modules != nil && bk.Has(LayerAttn) {
				for _, mod := range Modules {
					opt.Modules(i, mod, hook.Skip, 0, nil)
				}
			}
		} else {
			var bp *hook.BlockPlan
			if plan != nil {
				bp = &plan.Blocks[i]
			}
			next = m.runBlock(i, h, emb, context, skip, probe, bp, cache, opt.Modules)
			if kept[i] {
				cache.SetSpan(hook.Span{From: i, To: i}, nil, next)
			} else {
				temps = append(temps, next)
			}
		}
		if bk.Kind == Input {
			hs = append(hs, next)
		}
		h = next
	}
	eps := m.head(h, plan != nil && plan.Dynamics, cache)
	for _, t := range temps {
		t.MustFinalizeAll()
	}
	if probe != nil {
		keep(probe, "eps", tensors.FromFlatDataAndDimensions(eps, B, m.OutChannels, S, S))
	}
	return eps
}

// keep hands a host tensor to the probe and frees it afterwards.
func keep(probe hook.Probe, name string, t *tensors.Tensor) {
	probe(name, t)
	t.MustFinalizeAll()
}

// Embed computes the timestep embedding emb [B, TimeEmbedDim] of the model timesteps t, the
// ResBlocks' conditioning (a device tensor: the caller frees it).
func (m *Model) Embed(t []float64) (emb *tensors.Tensor, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	err = gx.Catch(func() { emb = m.embed(TimestepFeatures(t, m.ModelChannels), len(t)) })
	return emb, err
}

// RunBlock runs block i of Blocks on h [B, H, W, InChannels] (NHWC) with the timestep
// embedding emb [B, TimeEmbedDim], the context [B, L, ContextDim] and, for an output block,
// the skip [B, H, W, SkipChannels] (the output of input block Blocks()[i].Skip); emb, context
// or skip may be nil where the block does not read them. It returns the block's output, NHWC.
func (m *Model) RunBlock(i int, h, emb, context, skip *tensors.Tensor) (out *tensors.Tensor, err error) {
	if i < 0 || i >= len(m.blocks) {
		return nil, fmt.Errorf("unet: block %d outside [0, %d)", i, len(m.blocks))
	}
	bk := m.blocks[i]
	switch {
	case h == nil:
		return nil, fmt.Errorf("unet: block %s: no input", bk.Name)
	case bk.Has(LayerRes) && emb == nil:
		return nil, fmt.Errorf("unet: block %s has a ResBlock and needs the timestep embedding", bk.Name)
	case bk.Has(LayerAttn) && context == nil:
		return nil, fmt.Errorf("unet: block %s has a SpatialTransformer and needs the context", bk.Name)
	case bk.Kind == Output && skip == nil:
		return nil, fmt.Errorf("unet: output block %s needs the skip of input block %d", bk.Name, bk.Skip)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	err = gx.Catch(func() { out = m.runBlock(i, h, emb, context, skip, nil, nil, nil, nil) })
	if err != nil {
		return nil, fmt.Errorf("unet: block %s: %w", bk.Name, err)
	}
	return out, nil
}

// Head is the output layer (GroupNorm → SiLU → conv 3×3) on the last block's output h (NHWC);
// it returns ε flat NCHW.
func (m *Model) Head(h *tensors.Tensor) (eps []float32, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	err = gx.Catch(func() { eps = m.head(h, false, nil) })
	return eps, err
}

// BlockWeights are the arguments BuildBlock's w stands for, in order (a later graph that fuses
// block i with other work passes them).
func (m *Model) BlockWeights(i int) []*tensors.Tensor { return m.blockW[i].args }

// BuildBlock builds block i inside a graph under construction from nodes laid out as RunBlock's
// arguments (nil where unused) and w, the nodes of BlockWeights(i).
func (m *Model) BuildBlock(i int, h, emb, context, skip *Node, w []*Node) *Node {
	b := &builder{m: m, g: m.blockW[i], w: w}
	return b.block(m.blocks[i], h, emb, context, skip)
}

// ---- host-side pieces ---------------------------------------------------------------------

// TimestepFeatures are the reference's timestep_embedding (layers.TimestepFeatures: cos first,
// float32 arithmetic).
func TimestepFeatures(t []float64, dim int) []float32 { return layers.TimestepFeatures(t, dim) }

// nchwToNHWC reorders a flat [B, C, H, W] tensor to [B, H, W, C].
func nchwToNHWC(x []float32, B, C, H, W int) []float32 {
	out := make([]float32, len(x))
	for b := range B {
		for c := range C {
			for y := range H {
				for xx := range W {
					out[((b*H+y)*W+xx)*C+c] = x[((b*C+c)*H+y)*W+xx]
				}
			}
		}
	}
	return out
}

// ---- graph execution ----------------------------------------------------------------------

// run executes a graph family on args (host or device tensors), compiling each new input shape
// first and timing that apart. It panics on errors (callers run inside gx.Catch).
func (m *Model) run(key string, fn func([]*Node) []*Node, args ...any) []*tensors.Tensor {
	if m.execs == nil {
		m.execs = map[string]*Exec{}
	}
	e, ok := m.execs[key]
	if !ok {
		e = MustNewExec(m.backend, fn).WithName("unet/" + key)
		e.SetMaxCache(-1) // one graph per batch and latent size
		m.execs[key] = e
	}
	var sk strings.Builder
	sk.WriteString(key)
	for _, a := range args {
		if t, ok := a.(*tensors.Tensor); ok {
			sk.WriteString(t.Shape().String())
		}
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if !m.seen[sk.String()] {
		t0 := time.Now()
		if err := e.PreCompile(args...); err != nil {
			panic(fmt.Errorf("compile %s: %w", e.Name(), err))
		}
		m.compile += time.Since(t0)
		m.seen[sk.String()] = true
	}
	return e.MustExec(args...)
}

func withWeights(args []any, g *group) []any {
	for _, t := range g.args {
		args = append(args, t)
	}
	return args
}

// embed: t_freq [B, model_channels] → emb [B, TimeEmbedDim] (time_embed).
func (m *Model) embed(tfreq []float32, B int) *tensors.Tensor {
	outs := m.run("time_embed", func(in []*Node) []*Node {
		b := &builder{m: m, g: m.embedW, w: in[1:]}
		return []*Node{b.linear(activations.Swish(b.linear(in[0], "time_embed.0")), "time_embed.2")}
	}, withWeights([]any{tensors.FromFlatDataAndDimensions(tfreq, B, m.ModelChannels)}, m.embedW)...)
	return outs[0]
}

// runBlock runs block i's graph: inputs h, then emb, context and skip where the block reads
// them, then a Prune rule's inputs, then its weights. With a probe it also returns the NCHW
// output and the attention outputs; with a module hook, the transformer's module outputs.
func (m *Model) runBlock(i int, h, emb, context, skip *tensors.Tensor, probe hook.Probe, bp *hook.BlockPlan, cache *hook.Cache,
	modules func(int, hook.Module, hook.Action, int, *tensors.Tensor)) *tensors.Tensor {
	bk := m.blocks[i]
	useEmb, useCtx, useSkip := bk.Has(LayerRes), bk.Has(LayerAttn), bk.Kind == Output
	args := []any{h}
	for _, in := range []struct {
		use bool
		t   *tensors.Tensor
	}{{useEmb, emb}, {useCtx, context}, {useSkip, skip}} {
		if in.use {
			args = append(args, in.t)
		}
	}
	pr, prArgs := m.pruning(i, bp, cache, h)
	args = append(args, prArgs...)
	mods := modules != nil && useCtx
	key := fmt.Sprintf("%s/probe=%t/mods=%t/prune=%+v", bk.Name, probe != nil, mods, pr)
	outs := m.run(key, func(in []*Node) []*Node {
		n := 1
		take := func(use bool) *Node {
			if !use {
				return nil
			}
			n++
			return in[n-1]
		}
		eNode, cNode, sNode := take(useEmb), take(useCtx), take(useSkip)
		b := &builder{m: m, g: m.blockW[i], probe: probe != nil, mods: mods, base: bk.ProbeName()}
		if pr != nil {
			b.prune = pr
			b.pruneIn = in[n : n+pr.spec.NumArgs()]
			n += pr.spec.NumArgs()
		}
		b.w = in[n:]
		out := b.block(bk, in[0], eNode, cNode, sNode)
		res := []*Node{out}
		if probe != nil {
			res = append(res, TransposeAllAxes(out, 0, 3, 1, 2))
			for _, p := range b.probes { // in probeNames order
				res = append(res, p.node)
			}
		}
		return append(res, b.modOuts...)
	}, withWeights(args, m.blockW[i])...)
	rest := outs[1:]
	if probe != nil {
		probe(bk.ProbeName(), rest[0])
		rest[0].MustFinalizeAll()
		names := m.probeNames(bk)
		for j, name := range names {
			probe(name, rest[1+j])
			rest[1+j].MustFinalizeAll()
		}
		rest = rest[1+len(names):]
	}
	if mods {
		for j, mod := range Modules {
			a, fresh := hook.Full, h.Shape().Dimensions[1]*h.Shape().Dimensions[2]
			if pr != nil && pr.mods[j] {
				a, fresh = hook.Prune, fresh-pr.spec.K
			}
			modules(i, mod, a, fresh, rest[j])
			rest[j].MustFinalizeAll()
		}
	}
	return outs[0]
}

// blockPrune is a block's Prune actions as one graph variant: the rule and which of the
// transformer's modules (Modules order) run on the kept tokens.
type blockPrune struct {
	spec executor.PruneSpec
	mods [3]bool
}

// pruning returns the block's Prune variant and its inputs (nil when no module prunes).
func (m *Model) pruning(i int, bp *hook.BlockPlan, cache *hook.Cache, h *tensors.Tensor) (*blockPrune, []any) {
	if bp == nil {
		return nil, nil
	}
	var rule *hook.Pruning
	var mods [3]bool
	for j, mp := range bp.Modules {
		if mp.Action == hook.Prune {
			mods[j] = true
			if rule == nil {
				rule = mp.Prune
			} else if rule != mp.Prune {
				panic(fmt.Errorf("block %s: its modules prune by different rules; a block's transformer prunes once (DaTo, ToMeSD)", m.blocks[i].Name))
			}
		}
	}
	if rule == nil {
		return nil, nil
	}
	var dyn *tensors.Tensor
	if cache != nil {
		dyn = cache.Dynamics()
	}
	d := h.Shape().Dimensions
	spec, args, err := executor.PruneArgs(rule, hook.BlockShape{Tokens: d[1] * d[2], GridH: d[1], GridW: d[2]}, dyn)
	if err != nil {
		panic(fmt.Errorf("block %s: %w", m.blocks[i].Name, err))
	}
	return &blockPrune{spec: spec, mods: mods}, args
}

// probeNames are a block's attention probe names, in the order its probing graph returns them.
func (m *Model) probeNames(bk Block) []string {
	var names []string
	if !bk.Has(LayerAttn) {
		return nil
	}
	for d := range m.TransformerDepth {
		p := bk.ProbeName() + "_"
		if d > 0 {
			p += fmt.Sprintf("t%d_", d)
		}
		names = append(names, p+"attn1", p+"attn2")
	}
	return names
}

// head: h (NHWC) → ε (NCHW) on the host. With dynamics it keeps ε (NHWC) in the cache and, when
// the cache holds the previous ε, the per-token dynamics mean_c |ε − ε_prev| [B, H·W] (DaTo's).
func (m *Model) head(h *tensors.Tensor, dynamics bool, cache *hook.Cache) []float32 {
	args := []any{h}
	prev := dynamics && cache.Output() != nil
	if prev {
		args = append(args, cache.Output())
	}
	outs := m.run(fmt.Sprintf("out/dynamics=%t/prev=%t", dynamics, prev), func(in []*Node) []*Node {
		b := &builder{m: m, g: m.headW, w: in[1:]}
		if prev {
			b.w = in[2:]
		}
		y := b.conv3x3(activations.Swish(b.groupNorm(in[0], "out.0", ResEps)), "out.2")
		res := []*Node{TransposeAllAxes(y, 0, 3, 1, 2)}
		if dynamics {
			res = append(res, y)
		}
		if prev {
			d := y.Shape().Dimensions
			res = append(res, Reshape(ReduceMean(Abs(Sub(y, in[1])), -1), d[0], d[1]*d[2]))
		}
		return res
	}, withWeights(args, m.headW)...)
	eps := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].MustFinalizeAll()
	if dynamics {
		var dyn *tensors.Tensor
		if prev {
			dyn = outs[2]
		}
		cache.SetDynamics(outs[1], dyn)
	}
	return eps
}

// ---- graphs -------------------------------------------------------------------------------

// builder carries one graph's weight nodes and probe outputs while it is built.
type builder struct {
	m      *Model
	g      *group
	w      []*Node
	probe  bool
	base   string // the block's probe name
	probes []named
	// Plans: the block's Prune variant and its inputs, and whether the first transformer
	// block's module outputs leave the graph (modOuts, in Modules order).
	prune   *blockPrune
	pruneIn []*Node
	mods    bool
	modOuts []*Node
}

type named struct {
	name string
	node *Node
}

// p is the weight node of an LDM parameter name.
func (b *builder) p(name string) *Node {
	i, ok := b.g.index[name]
	if !ok {
		panic(fmt.Sprintf("unet: internal error: no parameter %q in this graph", name))
	}
	return b.w[i]
}

// block is a TimestepEmbedSequential: its layers in order, after the skip concatenation of an
// output block (cat([h, hs.pop()]) along channels: h first).
func (b *builder) block(bk Block, h, emb, context, skip *Node) *Node {
	if skip != nil {
		h = Concatenate([]*Node{h, skip}, -1)
	}
	for j, layer := range bk.Layers {
		name := fmt.Sprintf("%s.%d", bk.Name, j)
		switch layer {
		case LayerConvIn:
			h = b.conv3x3(h, name)
		case LayerRes:
			h = b.resBlock(h, emb, name)
		case LayerAttn:
			h = b.spatialTransformer(h, context, name)
		case LayerDown:
			h = b.downsample(h, name+".op")
		case LayerUp:
			h = b.conv3x3(upsample2(h), name+".conv")
		}
	}
	return h
}

// resBlock is ldm's ResBlock without scale-shift norm (SD): the embedding projection is added
// between the two convolutions.
func (b *builder) resBlock(x, emb *Node, name string) *Node {
	h := b.conv3x3(activations.Swish(b.groupNorm(x, name+".in_layers.0", ResEps)), name+".in_layers.2")
	e := b.linear(activations.Swish(emb), name+".emb_layers.1") // [B, C]
	d := h.Shape().Dimensions
	h = Add(h, layers.ExpandTo(Reshape(e, d[0], 1, 1, d[3]), h))
	h = b.conv3x3(activations.Swish(b.groupNorm(h, name+".out_layers.0", ResEps)), name+".out_layers.3")
	if _, ok := b.g.index[name+".skip_connection.weight"]; ok {
		x = b.linear(x, name+".skip_connection")
	}
	return Add(x, h)
}

// spatialTransformer: GroupNorm (eps 1e-6) → proj_in → the h·w tokens through the transformer
// blocks → proj_out, plus the input. proj_in/proj_out are 1×1 convs (or Linear): both a
// product over channels.
func (b *builder) spatialTransformer(x, context *Node, name string) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	h := b.linear(b.groupNorm(x, name+".norm", STEps), name+".proj_in")
	h = Reshape(h, B, H*W, C)
	for j := range b.m.TransformerDepth {
		tag := ""
		if j > 0 {
			tag = fmt.Sprintf("t%d_", j)
		}
		h = b.transformerBlock(h, context, fmt.Sprintf("%s.transformer_blocks.%d", name, j), tag)
	}
	h = b.linear(Reshape(h, B, H, W, C), name+".proj_out")
	return Add(h, x)
}

// transformerBlock is BasicTransformerBlock: pre-LayerNorm self-attention, cross-attention on
// the context, GEGLU feed-forward, each added to the stream.
//
// Under a Prune action a module runs on the kept tokens of its normalised input, and every
// token takes its output from its source (dato.py, tomesd: one choice per block, from the
// block's input x, shared by the pruned modules).
func (b *builder) transformerBlock(x, context *Node, name, tag string) *Node {
	shrink, expand := func(_ int, y *Node) *Node { return y }, func(_ int, y *Node) *Node { return y }
	if pr := b.prune; pr != nil {
		p := executor.Prune(pr.spec, x, b.pruneIn)
		shrink = func(m int, y *Node) *Node {
			if pr.mods[m] {
				return p.Shrink(y)
			}
			return y
		}
		expand = func(m int, y *Node) *Node {
			if pr.mods[m] {
				return p.Expand(y)
			}
			return y
		}
	}
	a1 := expand(0, b.attention(shrink(0, b.layerNorm(x, name+".norm1")), nil, name+".attn1"))
	b.keep(tag+"attn1", a1)
	x = Add(a1, x)
	a2 := expand(1, b.attention(shrink(1, b.layerNorm(x, name+".norm2")), context, name+".attn2"))
	b.keep(tag+"attn2", a2)
	x = Add(a2, x)
	ff := expand(2, b.feedForward(shrink(2, b.layerNorm(x, name+".norm3")), name+".ff"))
	if b.mods && tag == "" {
		b.modOuts = append(b.modOuts, a1, a2, ff)
	}
	return Add(ff, x)
}

// keep records an attention output for the probe.
func (b *builder) keep(suffix string, n *Node) {
	if b.probe {
		b.probes = append(b.probes, named{b.base + "_" + suffix, n})
	}
}

// attention is CrossAttention: q from x, k and v from the context (x itself when nil), no
// biases; heads of dim_head = C/heads; softmax(q·kᵀ)·scale with scale dim_head^−½ applied
// after the product; heads concatenated head-major, then to_out (with bias).
func (b *builder) attention(x, context *Node, name string) *Node {
	if context == nil {
		context = x
	}
	d := x.Shape().Dimensions
	B, N, C := d[0], d[1], d[2]
	L := context.Shape().Dimensions[1]
	heads := b.m.Heads
	dh := C / heads
	split := func(y *Node, n int) *Node { return Transpose(Reshape(y, B, n, heads, dh), 1, 2) } // [B, heads, n, dh]
	q := split(MatMul(x, b.p(name+".to_q.weight")), N)
	k := split(MatMul(context, b.p(name+".to_k.weight")), L)
	v := split(MatMul(context, b.p(name+".to_v.weight")), L)
	sim := MulScalar(Einsum("bhqd,bhkd->bhqk", q, k), math.Pow(float64(dh), -0.5))
	o := Einsum("bhqk,bhkd->bhqd", layers.SoftmaxLast(sim), v)
	o = Reshape(Transpose(o, 1, 2), B, N, C)
	return b.linear(o, name+".to_out.0")
}

// feedForward is GEGLU: the projection's first half times GELU (erf) of its second half, then
// the output Linear.
func (b *builder) feedForward(x *Node, name string) *Node {
	p := b.linear(x, name+".net.0.proj")
	parts := Split(p, -1, 2)
	return b.linear(Mul(parts[0], activations.Gelu(parts[1])), name+".net.2")
}

// layerNorm is LayerNorm over channels with affine parameters (eps 1e-5, biased variance).
func (b *builder) layerNorm(x *Node, name string) *Node {
	xc := Sub(x, layers.ExpandTo(ReduceAndKeep(x, ReduceMean, -1), x))
	y := Mul(xc, layers.ExpandTo(Rsqrt(AddScalar(ReduceAndKeep(Square(xc), ReduceMean, -1), LNEps)), xc))
	return Add(Mul(y, layers.ExpandTo(ExpandLeftToRank(b.p(name+".weight"), y.Rank()), y)),
		layers.ExpandTo(ExpandLeftToRank(b.p(name+".bias"), y.Rank()), y))
}

// groupNorm is GroupNorm(32, C, eps, affine) on NHWC, in float32: biased variance over each
// group's channels and all positions. The sums run in stages (group channels, columns, rows) so
// no float32 accumulation spans a whole feature map.
func (b *builder) groupNorm(x *Node, name string, eps float64) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	xr := Reshape(x, B, H, W, Groups, C/Groups)
	n := float64(H * W * (C / Groups))
	sum := func(y *Node) *Node {
		return ReduceAndKeep(ReduceAndKeep(ReduceAndKeep(y, ReduceSum, 4), ReduceSum, 2), ReduceSum, 1)
	}
	xc := Sub(xr, layers.ExpandTo(DivScalar(sum(xr), n), xr))
	variance := DivScalar(sum(Square(xc)), n)
	y := Reshape(Mul(xc, layers.ExpandTo(Rsqrt(AddScalar(variance, eps)), xc)), B, H, W, C)
	return Add(Mul(y, layers.ExpandTo(Reshape(b.p(name+".weight"), 1, 1, 1, C), y)),
		layers.ExpandTo(Reshape(b.p(name+".bias"), 1, 1, 1, C), y))
}

// linear is x·W + b over the last axis with W [C, O]: a Linear layer or a 1×1 convolution.
func (b *builder) linear(x *Node, name string) *Node {
	return layers.Linear(x, b.p(name+".weight"), b.p(name+".bias"))
}

// conv3x3 is a 3×3, stride 1, padding 1 convolution of an NHWC tensor (kernel [3, 3, C, O]).
func (b *builder) conv3x3(x *Node, name string) *Node {
	return b.conv(x, name, 1)
}

// downsample is the 3×3 convolution with stride 2 and padding 1 on every side (PyTorch's; a
// "same" padding would pad only the high side).
func (b *builder) downsample(x *Node, name string) *Node {
	return b.conv(x, name, 2)
}

func (b *builder) conv(x *Node, name string, stride int) *Node {
	w := b.p(name + ".weight")
	var y *Node
	if b.m.native {
		y = Convolve(x, w).StridePerAxis(stride, stride).PaddingPerDim([][2]int{{1, 1}, {1, 1}}).Done()
	} else {
		d := w.Shape().Dimensions
		y = MatMul(gx.Im2Col3(x, stride), Reshape(w, d[0]*d[1]*d[2], d[3]))
	}
	bias := b.p(name + ".bias")
	return Add(y, layers.ExpandTo(Reshape(bias, 1, 1, 1, bias.Shape().Dimensions[0]), y))
}

// upsample2 is nearest-neighbour ×2 (F.interpolate, scale 2, "nearest") on NHWC: every pixel
// repeated into a 2×2 block.
func upsample2(x *Node) *Node {
	d := x.Shape().Dimensions
	B, H, W, C := d[0], d[1], d[2], d[3]
	y := BroadcastToDims(Reshape(x, B, H, 1, W, 1, C), B, H, 2, W, 2, C)
	return Reshape(y, B, 2*H, 2*W, C)
}
