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
// The plan executor does not carry the UNet: its blocks are not made of the attention and MLP
// modules a DiT's are, and nothing caches or prunes inside them yet. So the layout lists the
// blocks but no module, and Forward refuses any plan but the full one rather than compute
// everything under a plan that says otherwise.
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

// Layout has one block per UNet block (input blocks, middle, output blocks) and no module (see
// Denoiser). Tokens, grid, width and heads are those of the full-resolution level.
func (d *Denoiser) Layout() hook.Layout {
	return hook.Layout{Depth: len(d.m.blocks), Tokens: d.size * d.size, GridH: d.size, GridW: d.size,
		Hidden: d.m.ModelChannels, Heads: d.m.Heads}
}

// CompileTime is the UNet's (hook.Compiler).
func (d *Denoiser) CompileTime() time.Duration { return d.m.CompileTime() }

// Forward runs the UNet on x [B, C, S, S] at timesteps t with the contexts of labels y.
func (d *Denoiser) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	if err := d.fullOnly(opt); err != nil {
		return nil, err
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
	return d.m.Forward(x, t, ctx, Options{Probe: opt.Probe})
}

// fullOnly refuses what only the executor could carry out: a plan that skips blocks or acts on
// modules, and the module hook.
func (d *Denoiser) fullOnly(opt hook.Options) error {
	if opt.Modules != nil || opt.Choices != nil {
		return fmt.Errorf("unet: module hooks need the plan executor, which does not carry the UNet yet")
	}
	p := opt.Plan
	if p == nil {
		return nil
	}
	if len(p.Blocks) != len(d.m.blocks) {
		return fmt.Errorf("unet: plan has %d blocks, the UNet %d", len(p.Blocks), len(d.m.blocks))
	}
	if len(p.Skips) > 0 {
		return fmt.Errorf("unet: plan skips blocks %d…%d; the UNet runs full plans only (no executor integration yet)", p.Skips[0].From, p.Skips[0].To)
	}
	if len(p.Keep) > 0 || p.Gate != nil {
		return fmt.Errorf("unet: plan caches or gates block ranges; the UNet runs full plans only (no executor integration yet)")
	}
	for b, bp := range p.Blocks {
		if len(bp.Modules) > 0 {
			return fmt.Errorf("unet: plan acts on %d modules of block %d; the UNet exposes none and runs full plans only (no executor integration yet)", len(bp.Modules), b)
		}
	}
	return nil
}
