package dit

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// PosEmbed is the fixed 2-D sin-cos table [N, D] of the reference (computed in float64, stored
// float32): channels [0, D/2) encode the grid column, [D/2, D) the row, each half [sin | cos]
// with ω_k = 10000^(−k/(D/4)).
func PosEmbed(hidden, grid int) []float32 {
	q := hidden / 4
	out := make([]float32, grid*grid*hidden)
	for i := range grid {
		for j := range grid {
			row := out[(i*grid+j)*hidden:]
			for k := range q {
				omega := 1 / math.Pow(10000, float64(k)/float64(q))
				row[k] = float32(math.Sin(float64(j) * omega))
				row[q+k] = float32(math.Cos(float64(j) * omega))
				row[2*q+k] = float32(math.Sin(float64(i) * omega))
				row[3*q+k] = float32(math.Cos(float64(i) * omega))
			}
		}
	}
	return out
}

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
			data = PosEmbed(c.Hidden, c.Grid())
		} else {
			for i := range data {
				data[i] = float32(rng.NormFloat64() * 0.05)
			}
		}
		f.Tensors[k] = checkpoint.NewF32(data, shape...)
	}
	return f
}
