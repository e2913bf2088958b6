package diffusion

import (
	"math"
	"math/rand/v2"
)

// Noise is the Gaussian stream of one sample. It depends on (seed, sample index) only, so a
// sample's noise is the same whatever the batch size, shard split or GOMAXPROCS. Normals come
// from Box–Muller over PCG (both fixed algorithms) rather than rand.NormFloat64, whose algorithm
// the standard library does not promise to keep.
type Noise struct {
	src   *rand.PCG
	spare float64
	has   bool
}

// NewNoise returns the stream of sample index under seed.
func NewNoise(seed int64, index int) *Noise {
	return &Noise{src: rand.NewPCG(uint64(seed), mix(uint64(index)))}
}

// Fill writes standard normal float32 values into dst.
func (n *Noise) Fill(dst []float32) {
	for i := range dst {
		dst[i] = float32(n.normal())
	}
}

func (n *Noise) normal() float64 {
	if n.has {
		n.has = false
		return n.spare
	}
	// u1 in (0, 1] so the log is finite; 53-bit uniforms.
	u1 := float64(n.src.Uint64()>>11+1) / (1 << 53)
	u2 := float64(n.src.Uint64()>>11) / (1 << 53)
	r := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	n.spare, n.has = r*s, true
	return r * c
}

// Label draws the class label of a sample uniformly from [0, classes), from a stream separate
// from the noise.
func Label(seed int64, index, classes int) int {
	src := rand.NewPCG(uint64(seed)^0x6c62272e07bb0142, mix(uint64(index)))
	n := uint64(classes)
	limit := -n % n // reject the low values that would bias the modulo
	for {
		v := src.Uint64()
		if v >= limit {
			return int(v % n)
		}
	}
}

// mix is splitmix64's finaliser: neighbouring indices get unrelated stream selectors.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
