package vae

import (
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
	return checkpoint.Random(c.ExpectedShapes(), seed, 1, checkpoint.FanIn)
}
