package unet_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/unet"
)

// The UNet's FLOPs by hand on the tiny golden UNet (16×16 latents, 32/64 channels, context 2×32):
// the first conv, a full-resolution transformer block, and the same block with 102 tokens pruned.
func TestBlockFLOPsByHand(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	d, err := unet.NewDenoiser(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	ctx := make([]float32, 2*m.ContextDim) // L = 2 tokens
	if err := d.SetContexts(ctx, ctx[:2*m.ContextDim]); err != nil {
		t.Fatal(err)
	}
	full := d.BlockFLOPs(hook.FullPlan(d.Layout()), 1)
	if want := int64(2 * 256 * 9 * 4 * 32); full[0] != want {
		t.Errorf("input_blocks.0: %d FLOPs, want %d (conv 3×3, 4 → 32 channels, 256 pixels)", full[0], want)
	}
	// input_blocks.1: ResBlock 32 → 32 (two convs and the embedding projection of 128) and a
	// SpatialTransformer on 256 tokens of 32 channels (proj in/out; self-attention q, k, v, out and
	// two 256×256 products; cross-attention q, out, k and v of the 2 context tokens, two 256×2
	// products; GEGLU 32 → 256 → 32).
	const n, c, L = 256, 32, 2
	res := int64(2*n*9*c*c*2 + 2*128*c)
	attn := func(a int64) int64 { return 2*4*a*c*c + 2*2*a*a*c }
	st := int64(2*2*n*c*c) + attn(n) + int64(2*2*n*c*c+2*2*L*c*c+2*2*n*L*c) + int64(2*n*c*8*c+2*n*4*c*c)
	if full[1] != res+st {
		t.Errorf("input_blocks.1: %d FLOPs, want %d", full[1], res+st)
	}
	p := hook.FullPlan(d.Layout())
	p.Blocks[1].Modules[0] = hook.ModulePlan{Action: hook.Prune, Prune: &hook.Pruning{Rule: hook.PruneDynamics, K: 102, SX: 2, SY: 2}}
	p.Skip(hook.SpanSkip{Span: hook.Span{From: 3, To: 3}, Mode: hook.SkipReplace})
	got := d.BlockFLOPs(p, 2)
	if want := 2 * (res + st - attn(n) + attn(n-102) + 2*n*n*c); got[1] != want || got[3] != 0 || got[0] != 2*full[0] {
		t.Errorf("pruned input_blocks.1 on 2 rows: %d FLOPs, want %d; skipped block 3: %d, want 0", got[1], want, got[3])
	}
}

// A weightless model of the same configuration counts the same FLOPs and refuses to run.
func TestShapeCountsWithoutWeights(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	s, err := unet.Shape(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := make([]float32, 3*m.ContextDim)
	var got [2][]int64
	for i, model := range []*unet.Model{m, s} {
		d, err := unet.NewDenoiser(model, 16)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.SetContexts(ctx, ctx); err != nil {
			t.Fatal(err)
		}
		got[i] = d.BlockFLOPs(hook.FullPlan(d.Layout()), 2)
	}
	if !slices.Equal(got[0], got[1]) {
		t.Errorf("weightless FLOPs %v, loaded %v", got[1], got[0])
	}
	if _, err := s.Forward(make([]float32, 4*16*16), []float64{1}, ctx, unet.Options{}); err == nil || !strings.Contains(err.Error(), "no weights") {
		t.Errorf("forward without weights: error %v", err)
	}
}
