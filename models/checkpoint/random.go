package checkpoint

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Random is a state dict of the given shapes filled by fill, key by key in sorted order from one
// PCG stream (seed, stream), so a model's random weights depend on the seed alone: untrained
// models for benchmarks, tests and sizes without a checkpoint. fill gets the key, its shape,
// its element count and the stream, and returns the values.
func Random(shapes map[string][]int, seed, stream uint64, fill func(key string, shape []int, n int, r *rand.Rand) []float32) *File {
	rng := rand.New(rand.NewPCG(seed, stream))
	f := &File{Path: "random", Tensors: map[string]*Tensor{}}
	for _, k := range slices.Sorted(maps.Keys(shapes)) {
		n := 1
		for _, d := range shapes[k] {
			n *= d
		}
		f.Tensors[k] = NewF32(fill(k, shapes[k], n, rng), shapes[k]...)
	}
	return f
}

// Normal fills with N(0, std²).
func Normal(std float64, n int, r *rand.Rand) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

// FanIn fills a convolutional network's weights so its activations keep their scale: weights
// (rank > 1) N(0, 1/fan_in), norm scales 1 + N(0, 0.1²), other vectors N(0, 0.05²).
func FanIn(key string, shape []int, n int, r *rand.Rand) []float32 {
	v := make([]float32, n)
	for i := range v {
		x := r.NormFloat64()
		switch {
		case len(shape) > 1:
			x /= math.Sqrt(float64(n / shape[0]))
		case strings.Contains(key, "norm") && strings.HasSuffix(key, ".weight"):
			x = 1 + 0.1*x
		default:
			x *= 0.05
		}
		v[i] = float32(x)
	}
	return v
}
