package metrics

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randomCov returns the covariance of n random rows of dimension d.
func randomCov(rng *rand.Rand, n, d int) ([]float64, *mat.SymDense) {
	s := NewStats(d)
	flat := make([]float32, n*d)
	for i := range flat {
		flat[i] = float32(rng.NormFloat64()) + float32(i%d)*0.01
	}
	if err := s.AddRows(flat, n); err != nil {
		panic(err)
	}
	return s.Mean(), s.Cov()
}

// BenchmarkFrechetDistance2048 times FrechetDistance at the Inception pool_3 dimension.
func BenchmarkFrechetDistance2048(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	mu1, s1 := randomCov(rng, 3000, 2048)
	mu2, s2 := randomCov(rng, 3000, 2048)
	b.ResetTimer()
	for b.Loop() {
		if _, err := FrechetDistance(mu1, s1, mu2, s2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatsAddRows measures AddRows throughput on 2048-D float32 batches of 256 rows.
func BenchmarkStatsAddRows(b *testing.B) {
	const d, rows = 2048, 256
	rng := rand.New(rand.NewPCG(3, 4))
	flat := make([]float32, rows*d)
	for i := range flat {
		flat[i] = float32(rng.NormFloat64())
	}
	s := NewStats(d)
	b.SetBytes(int64(len(flat) * 4))
	b.ResetTimer()
	for b.Loop() {
		if err := s.AddRows(flat, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
