package unet

import (
	"fmt"
	"time"

	"github.com/cachebench/cachebench/harness/hook"
)

// Denoiser is a UNet as the sampling loop sees it (hook.Model): its labels index a table of
// text contexts installed with SetContexts, and one shared null context serves every CFG null
// row, as SD's unconditional context is the single embedding of "".
//
// Its plans address blocks in execution order (input blocks, middle block, output blocks) and,
// in blocks with a SpatialTransformer, the first transformer block's self-attention,
// cross-attention and feed-forward (Modules). What the UNet carries out: a block skipped alone
// (a SkipReplace of Span{b, b}) outputs its own cached output, which an input block also pushes
// as its skip connection (DeepCache; DaTo's cache strategy); a block in Keep stores its output;
// Prune actions (ToMeSD, DaTo); Plan.Dynamics. Block-range residuals, gates, partial or
// predicted modules are DiT-style caching the UNet's blocks do not take.
type Denoiser struct {
	m       *Model
	size    int       // latent side
	tokens  int       // context length L
	prompts int       // P
	cond    []float32 // [P, L, ContextDim]
	null    []float32 // [L, ContextDim]
}

// NewDenoiser wraps m for latents of size×size (a multiple of the model's Downscale).
func NewDenoiser(m *Model, size int) (*Denoiser, error) {
	switch {
	case m == nil:
		return nil, fmt.Errorf("unet: denoiser without a model")
	case size <= 0 || size%m.Downscale() != 0:
		return nil, fmt.Errorf("unet: latent side %d: want a positive multiple of %d", size, m.Downscale())
	case m.OutChannels != m.InChannels:
		// The sampler's state and ε share a shape; a UNet with another output is not a denoiser.
		return nil, fmt.Errorf("unet: %d output channels for %d input channels: the samplers need ε of the latent's shape", m.OutChannels, m.InChannels)
	}
	return &Denoiser{m: m, size: size}, nil
}

// Model is the wrapped UNet.
func (d *Denoiser) Model() *Model { return d.m }

// SetContexts installs the text contexts: cond [P, L, ContextDim] (label p reads row p) and the
// null context [L, ContextDim] of every CFG null row (label P, NullLabel's).
func (d *Denoiser) SetContexts(cond, null []float32) error {
	C := d.m.ContextDim
	if len(null) == 0 || len(null)%C != 0 {
		return fmt.Errorf("unet: null context has %d values, want L×%d", len(null), C)
	}
	L := len(null) / C
	if len(cond) == 0 || len(cond)%(L*C) != 0 {
		return fmt.Errorf("unet: contexts have %d values, want P×%d×%d (the null context's length)", len(cond), L, C)
	}
	d.cond, d.null = append([]float32(nil), cond...), append([]float32(nil), null...)
	d.tokens, d.prompts = L, len(cond)/(L*C)
	return nil
}

// Prompts is the number of installed contexts (P).
func (d *Denoiser) Prompts() int { return d.prompts }

// Spec is the latent layout; NumClasses is the number of installed contexts.
func (d *Denoiser) Spec() hook.Spec {
	return hook.Spec{Channels: d.m.InChannels, Height: d.size, Width: d.size, NumClasses: d.prompts}
}

// NullLabel is the shared null context's label, whatever the row's prompt.
func (d *Denoiser) NullLabel(int64) int64 { return int64(d.prompts) }

// Layout has one block per UNet block with the transformer's Modules where the block has a
// SpatialTransformer, on the token grid of its resolution; Tokens, grid, width and heads are
// those of the full-resolution level.
func (d *Denoiser) Layout() hook.Layout {
	l := hook.Layout{Depth: len(d.m.blocks), Modules: Modules, Tokens: d.size * d.size, GridH: d.size, GridW: d.size,
		Hidden: d.m.ModelChannels, Heads: d.m.Heads}
	for _, bk := range d.m.blocks {
		bs := hook.BlockShape{Name: bk.Name}
		if bk.Has(LayerAttn) {
			side := d.size / bk.Factor
			bs.Tokens, bs.GridH, bs.GridW = side*side, side, side
		}
		l.Blocks = append(l.Blocks, bs)
	}
	return l
}

// CompileTime is the UNet's (hook.Compiler).
func (d *Denoiser) CompileTime() time.Duration { return d.m.CompileTime() }

// Forward runs the UNet on x [B, C, S, S] at timesteps t with the contexts of labels y.
func (d *Denoiser) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	plan := opt.Plan
	if plan == nil {
		plan = hook.FullPlan(d.Layout())
	}
	if err := d.check(plan, opt.Cache, len(t)); err != nil {
		return nil, err
	}
	if opt.Choices != nil {
		return nil, fmt.Errorf("unet: token-choice hooks are ToCa's; the UNet's modules make no partial choice")
	}
	if d.prompts == 0 {
		return nil, fmt.Errorf("unet: no contexts installed (SetContexts)")
	}
	if len(y) != len(t) {
		return nil, fmt.Errorf("unet: %d labels for %d timesteps", len(y), len(t))
	}
	per := d.tokens * d.m.ContextDim
	ctx := make([]float32, 0, len(y)*per)
	for i, v := range y {
		switch {
		case v == int64(d.prompts):
			ctx = append(ctx, d.null...)
		case v >= 0 && v < int64(d.prompts):
			ctx = append(ctx, d.cond[int(v)*per:int(v+1)*per]...)
		default:
			return nil, fmt.Errorf("unet: label %d of row %d: want a context in [0, %d] (%d = null)", v, i, d.prompts, d.prompts)
		}
	}
	return d.m.Forward(x, t, ctx, Options{Probe: opt.Probe, Plan: plan, Cache: opt.Cache, Modules: opt.Modules})
}

// check refuses a plan the UNet cannot carry out, before any compute.
func (d *Denoiser) check(p *hook.Plan, c *hook.Cache, rows int) error {
	if opt := p; opt.Gate != nil {
		return fmt.Errorf("unet: plan gates blocks %d…%d; the UNet's blocks take no gate (threshold caches are DiT-style)", opt.Gate.Span.From, opt.Gate.Span.To)
	}
	for _, sk := range p.Skips {
		if sk.From != sk.To || sk.Mode != hook.SkipReplace || sk.Source != nil {
			return fmt.Errorf("unet: plan skips blocks %d…%d by %v; the UNet replaces single blocks by their own cached output (Span{b, b}, SkipReplace)", sk.From, sk.To, sk.Mode)
		}
	}
	for _, sp := range p.Keep {
		if sp.From != sp.To {
			return fmt.Errorf("unet: plan keeps blocks %d…%d; the UNet keeps single blocks' outputs (Span{b, b})", sp.From, sp.To)
		}
		if _, skipped := p.SkipAt(sp.From); skipped {
			return fmt.Errorf("unet: plan both skips and keeps block %d", sp.From)
		}
	}
	if p.Dynamics && c == nil {
		return fmt.Errorf("unet: plan keeps dynamics and has no cache")
	}
	if err := p.Validate(d.Layout(), c, rows); err != nil {
		return fmt.Errorf("unet: %w", err)
	}
	for b, bp := range p.Blocks {
		var rule *hook.Pruning
		for m, mp := range bp.Modules {
			switch mp.Action {
			case hook.Full, hook.Skip:
				if mp.History != nil {
					return fmt.Errorf("unet: block %d %s keeps a history; the UNet's modules keep none", b, Modules[m])
				}
			case hook.Prune:
				if d.m.TransformerDepth > 1 {
					return fmt.Errorf("unet: block %d prunes tokens, and its SpatialTransformer has %d transformer blocks; one rule's draws serve one block (SD v1 has 1)", b, d.m.TransformerDepth)
				}
				if rule != nil && rule != mp.Prune {
					return fmt.Errorf("unet: block %d prunes its modules by different rules; a block prunes once, from its input", b)
				}
				rule = mp.Prune
				if rule.Rule == hook.PruneDynamics && c != nil && c.Dynamics() != nil && d.Layout().Blocks[b].Tokens != d.size*d.size {
					return fmt.Errorf("unet: block %d (%s) prunes by dynamics at %d tokens, and the dynamics are per latent pixel (%d); DaTo prunes full-resolution blocks only",
						b, d.m.blocks[b].Name, d.Layout().Blocks[b].Tokens, d.size*d.size)
				}
			default:
				return fmt.Errorf("unet: block %d %s: action %s; the UNet's modules run full, pruned, or skip with their block", b, Modules[m], mp.Action)
			}
		}
	}
	return nil
}
