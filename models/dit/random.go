package dit

import (
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/layers"
)

// RandomWeights returns a state dict in the reference layout with N(0, 0.05²) parameters and the
// fixed pos_embed: an untrained model for benchmarks, tests and sizes without a checkpoint.
func RandomWeights(c Config, seed uint64) *checkpoint.File {
	rng := rand.New(rand.NewPCG(seed, 0xd17))
	f := &checkpoint.File{Path: "random", Tensors: map[string]*checkpoint.Tensor{}}
	shapes := c.ExpectedShapes()
	for _, k := range slices.Sorted(maps.Keys(shapes)) {
		shape := shapes[k]
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		if k == "pos_embed" {
			data = layers.PosEmbed(c.Hidden, c.Grid(), c.Grid(), float64(c.Grid()), 1)
		} else {
			for i := range data {
				data[i] = float32(rng.NormFloat64() * 0.05)
			}
		}
		f.Tensors[k] = checkpoint.NewF32(data, shape...)
	}
	return f
}
