package vae

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// SD is the decoder of Stable Diffusion v1 and sd-vae-ft-ema/mse: ch 128, ch_mult [1, 2, 4, 4],
// two ResBlocks per level (three in the decoder), z 4, RGB, attention in the mid block only.
var SD = Config{EmbedDim: 4, ZChannels: 4, Channels: []int{128, 256, 512, 512}, NumResBlocks: 2, OutChannels: 3,
	LevelAttn: []bool{false, false, false, false}, MidAttn: true}

// RandomWeights returns an LDM-layout state dict of the configuration: convolution weights
// N(0, 1/fan_in), GroupNorm scales 1 + N(0, 0.1²), biases N(0, 0.05²) — an untrained decoder whose
// activations keep their scale, for throughput measurements (runbench sample --vae random:sd) and
// tests where no checkpoint may be downloaded.
func RandomWeights(c Config, seed uint64) *checkpoint.File {
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
