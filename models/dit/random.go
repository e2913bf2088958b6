package dit

import (
	"math/rand/v2"

	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/layers"
)

// RandomWeights returns a state dict in the reference layout with N(0, 0.05²) parameters and the
// fixed pos_embed: an untrained model for benchmarks, tests and sizes without a checkpoint.
func RandomWeights(c Config, seed uint64) *checkpoint.File {
	return checkpoint.Random(c.ExpectedShapes(), seed, 0xd17, func(k string, _ []int, n int, r *rand.Rand) []float32 {
		if k == "pos_embed" {
			return layers.PosEmbed(c.Hidden, c.Grid(), c.Grid(), float64(c.Grid()), 1)
		}
		return checkpoint.Normal(0.05, n, r)
	})
}
