package unet_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/unet"
)

// randomWeights is an LDM state dict of c: weights N(0, 1/fan_in), norm scales 1 + N(0, 0.1²),
// other vectors N(0, 0.05²) (the golden files' rule).
func randomWeights(c unet.Config, seed uint64) *checkpoint.File {
	return checkpoint.Random(c.ExpectedShapes(), seed, 1, checkpoint.FanIn)
}

// BenchmarkSDLevel0Block times SD v1's first ResBlock + SpatialTransformer block (input_blocks.1:
// 320 channels, 8 heads, context 77×768) at a 32×32 latent (256×256 images), batch 2 (one image
// under CFG), on a one-level model of SD v1's widths.
func BenchmarkSDLevel0Block(b *testing.B) {
	c := unet.SDv1
	c.ChannelMult, c.AttentionLevels = []int{1}, []bool{true}
	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := unet.New(be, randomWeights(c, 1), c.Heads)
	if err != nil {
		b.Fatal(err)
	}
	const B, S = 2, 32
	rng := rand.New(rand.NewPCG(2, 1))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	h := tensors.FromFlatDataAndDimensions(fill(B*S*S*320), B, S, S, 320)
	ctx := tensors.FromFlatDataAndDimensions(fill(B*77*768), B, 77, 768)
	emb, err := m.Embed([]float64{500, 500})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.RunBlock(1, h, emb, ctx, nil); err != nil { // compile, upload the weights
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		out, err := m.RunBlock(1, h, emb, ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		out.MustFinalizeAll()
	}
}
