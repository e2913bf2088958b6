package metrics

import (
	"math"
	"math/rand/v2"
	"testing"
)

func synthFeatures(n, d int, shift float64, seed uint64) *Features {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := &Features{N: n, PoolDim: d, Pool: make([]float32, n*d), SpatialDim: 3, Spatial: make([]float32, n*3), LogitDim: 4, Logits: make([]float32, n*4)}
	for i := range f.Pool {
		f.Pool[i] = float32(rng.NormFloat64() + shift)
	}
	for i := range f.Spatial {
		f.Spatial[i] = float32(rng.NormFloat64())
	}
	for i := range f.Logits {
		f.Logits[i] = float32(3 * rng.NormFloat64())
	}
	return f
}

func TestEvaluate(t *testing.T) {
	ref := synthFeatures(300, 8, 0, 1)
	rs, err := ref.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The reference against itself: FID and sFID 0, precision and recall 1.
	r, err := Evaluate(ref, rs, ref, "synthetic")
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.FID) > 1e-9 || math.Abs(*r.SFID) > 1e-9 || *r.Precision != 1 || *r.Recall != 1 {
		t.Errorf("self: FID %g sFID %g P %g R %g", r.FID, *r.SFID, *r.Precision, *r.Recall)
	}
	// A shifted set: FID equals the Fréchet distance of the two sets' statistics (≈ 8 · 0.5²).
	gen := synthFeatures(300, 8, 0.5, 2)
	r, err = Evaluate(gen, rs, nil, "synthetic")
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := gen.Stats()
	want, _ := FrechetDistance(gs.Mu, gs.Sigma, rs.Mu, rs.Sigma)
	if r.FID != want || r.FID < 1 || r.FID > 3 {
		t.Errorf("FID %g, want %g (≈ 2)", r.FID, want)
	}
	if r.IS == nil || *r.IS < 1 || r.Precision != nil || r.RefN != 0 {
		t.Errorf("IS %v, precision %v, ref n %d", r.IS, r.Precision, r.RefN)
	}
	// Mismatched extractors are refused.
	if _, err := Evaluate(synthFeatures(10, 4, 0, 3), rs, nil, "x"); err == nil {
		t.Error("4-dim features against an 8-dim reference: want an error")
	}
	if _, err := (&Features{N: 1, PoolDim: 2, Pool: []float32{1, 2}}).Stats(); err == nil {
		t.Error("one image: want an error")
	}
}
