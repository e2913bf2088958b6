package vae

import (
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// SD is the decoder of Stable Diffusion v1 and sd-vae-ft-ema/mse: ch 128, ch_mult [1, 2, 4, 4],
// two ResBlocks per level (three in the decoder), z 4, RGB, attention in the mid block only.
var SD = Config{EmbedDim: 4, ZChannels: 4, Channels: []int{128, 256, 512, 512}, NumResBlocks: 2, OutChannels: 3,
	LevelAttn: []bool{false, false, false, false}, MidAttn: true}

// RandomWeights returns an LDM-layout state dict of the configuration with N(0, 0.02²) weights
// and unit GroupNorm scales: an untrained decoder for throughput measurements (runbench sample
// --vae random:sd) where no checkpoint may be downloaded.
func RandomWeights(c Config, seed uint64) *checkpoint.File {
	rng := rand.New(rand.NewPCG(seed, 0x5dae))
	f := &checkpoint.File{Path: "random", Tensors: map[string]*checkpoint.Tensor{}}
	shapes := c.ExpectedShapes()
	for _, k := range slices.Sorted(maps.Keys(shapes)) {
		shape := shapes[k]
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.NormFloat64() * 0.02)
			if len(shape) == 1 && isNormScale(k) {
				data[i] = 1
			}
		}
		f.Tensors[k] = checkpoint.NewF32(data, shape...)
	}
	return f
}

// isNormScale tells GroupNorm weights (norm*.weight) apart from biases and conv weights.
func isNormScale(k string) bool {
	for _, s := range []string{"norm1.weight", "norm2.weight", "norm.weight", "norm_out.weight"} {
		if len(k) >= len(s) && k[len(k)-len(s):] == s {
			return true
		}
	}
	return false
}
