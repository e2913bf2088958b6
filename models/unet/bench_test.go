package unet_test

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/unet"
)

// randomWeights is an LDM state dict of c: weights N(0, 1/fan_in), norm scales 1 + N(0, 0.1²),
// other vectors N(0, 0.05²) (the golden files' rule).
func randomWeights(c unet.Config, seed uint64) *checkpoint.File {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := &checkpoint.File{Path: "random", Tensors: map[string]*checkpoint.Tensor{}}
	shapes := c.ExpectedShapes()
	for _, k := range slices.Sorted(maps.Keys(shapes)) {
		s := shapes[k]
		n := 1
		for _, d := range s {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			x := rng.NormFloat64()
			switch {
			case len(s) > 1:
				x /= math.Sqrt(float64(n / s[0]))
			case strings.Contains(k, "norm") && strings.HasSuffix(k, ".weight"):
				x = 1 + 0.1*x
			default:
				x *= 0.05
			}
			v[i] = float32(x)
		}
		f.Tensors[k] = checkpoint.NewF32(v, s...)
	}
	return f
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
