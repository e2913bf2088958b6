package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func wantErr(t *testing.T, name string, err error, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Errorf("%s: error %v, want one containing %q", name, err, substr)
	}
}

// TestFrechetDiagonal checks the closed form for commuting (diagonal) covariances: Σ(√a−√b)² + ‖Δμ‖².
func TestFrechetDiagonal(t *testing.T) {
	a := []float64{4, 1, 0, 9, 2.5}
	b := []float64{1, 1, 3, 0, 0.1}
	mu1 := []float64{1, 2, 3, 4, 5}
	mu2 := []float64{1, 0, 3, 4, 4}
	s1, s2 := mat.NewSymDense(5, nil), mat.NewSymDense(5, nil)
	want := 4.0 + 1.0
	for i := range a {
		s1.SetSym(i, i, a[i])
		s2.SetSym(i, i, b[i])
		d := math.Sqrt(a[i]) - math.Sqrt(b[i])
		want += d * d
	}
	got, err := FrechetDistance(mu1, s1, mu2, s2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-12 {
		t.Errorf("FID = %.15g, want %.15g", got, want)
	}
	zero := mat.NewSymDense(5, nil)
	if got, err := FrechetDistance(mu1, zero, mu1, zero); err != nil || got != 0 {
		t.Errorf("zero covariances: %v, %v; want 0", got, err)
	}
	// Not positive semi-definite: σ = −I (a negative variance, once printed as FID −0.32), and a
	// matrix with a positive diagonal but a negative eigenvalue ([[1, 2], [2, 1]]: −1).
	neg := mat.NewSymDense(5, nil)
	for i := range 5 {
		neg.SetSym(i, i, -1)
	}
	if _, err := FrechetDistance(mu1, s1, mu2, neg); err == nil || !strings.Contains(err.Error(), "sigma2[0,0] = -1") {
		t.Errorf("σ2 = −I: err = %v", err)
	}
	indef := mat.NewSymDense(2, []float64{1, 2, 2, 1})
	if got, err := FrechetDistance([]float64{0, 0}, indef, []float64{0, 0}, indef); err == nil || !strings.Contains(err.Error(), "not positive semi-definite") {
		t.Errorf("indefinite σ: FID %v, err = %v", got, err)
	}
}

// TestFrechetBothRankDeficient compares against the eigendecomposition oracle when neither covariance has full rank.
func TestFrechetBothRankDeficient(t *testing.T) {
	const d = 40
	for _, n := range [][2]int{{10, 25}, {30, 3}, {2, 2}, {41, 15}} {
		flat1, flat2 := testFeatures(uint64(n[0]), n[0], d), testFeatures(uint64(100+n[1]), n[1], d)
		s1, s2 := NewStats(d), NewStats(d)
		if err := s1.AddRows(flat1, n[0]); err != nil {
			t.Fatal(err)
		}
		if err := s2.AddRows(flat2, n[1]); err != nil {
			t.Fatal(err)
		}
		c1, c2 := s1.Cov(), s2.Cov()
		got, err := TraceSqrtProduct(c1, c2)
		if err != nil {
			t.Fatal(err)
		}
		want := traceSqrtProductEig(t, c1, c2)
		rev, _ := TraceSqrtProduct(c2, c1)
		t.Logf("rows %v: tr_covmean %.12g, oracle %.12g, rel diff %.2g", n, got, want, relErr(got, want))
		if math.IsNaN(got) || relErr(got, want) > 1e-6 || relErr(rev, want) > 1e-6 {
			t.Errorf("rows %v: tr_covmean %.12g (swapped %.12g), oracle %.12g", n, got, rev, want)
		}
		fid, err := FrechetDistance(s1.Mean(), c1, s2.Mean(), c2)
		if err != nil || math.IsNaN(fid) || fid < 0 {
			t.Errorf("rows %v: FID %v, %v", n, fid, err)
		}
	}
}

// TestFrechetRankOne checks the exact value for two single-direction covariances: tr√(vvᵀwwᵀ) = |v·w|.
func TestFrechetRankOne(t *testing.T) {
	const d = 40
	flat := testFeatures(3, 4, d)
	s1, s2 := NewStats(d), NewStats(d)
	if err := s1.AddRows(flat[:2*d], 2); err != nil {
		t.Fatal(err)
	}
	if err := s2.AddRows(flat[2*d:], 2); err != nil {
		t.Fatal(err)
	}
	var dot float64
	for j := 0; j < d; j++ { // σ = vvᵀ with v = (x₁−x₂)/√2
		dot += float64(flat[j]-flat[d+j]) * float64(flat[2*d+j]-flat[3*d+j]) / 2
	}
	got, err := TraceSqrtProduct(s1.Cov(), s2.Cov())
	if err != nil {
		t.Fatal(err)
	}
	oracle := traceSqrtProductEig(t, s1.Cov(), s2.Cov())
	t.Logf("rank one: exact %.15g, got rel err %.2g, eigen oracle rel err %.2g", math.Abs(dot), relErr(got, math.Abs(dot)), relErr(oracle, math.Abs(dot)))
	if relErr(got, math.Abs(dot)) > 1e-12 {
		t.Errorf("tr_covmean %.15g, want %.15g", got, math.Abs(dot))
	}
}

func TestFrechetErrors(t *testing.T) {
	s2, s3 := mat.NewSymDense(2, nil), mat.NewSymDense(3, nil)
	_, err := FrechetDistance([]float64{0, 0}, s2, []float64{0, 0, 0}, s3)
	wantErr(t, "mu dims", err, "mean dimensions differ: 2 and 3")
	_, err = FrechetDistance([]float64{0, 0}, s3, []float64{0, 0}, s2)
	wantErr(t, "sigma1 dims", err, "sigma1 is 3×3, want 2×2")
	_, err = FrechetDistance([]float64{0, 0}, s2, []float64{0, 0}, s3)
	wantErr(t, "sigma2 dims", err, "sigma2 is 3×3, want 2×2")
	_, err = FrechetDistance(nil, s2, nil, s2)
	wantErr(t, "empty", err, "empty")
	_, err = FrechetDistance([]float64{0, math.NaN()}, s2, []float64{0, 0}, s2)
	wantErr(t, "NaN mu", err, "mu1[1] = NaN")
	bad := mat.NewSymDense(2, []float64{1, math.Inf(1), math.Inf(1), 1})
	_, err = FrechetDistance([]float64{0, 0}, s2, []float64{0, 0}, bad)
	wantErr(t, "Inf sigma", err, "sigma2[0,1] = +Inf")
	_, err = TraceSqrtProduct(s2, s3)
	wantErr(t, "trace dims", err, "differ")
}

func TestKIDProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := mat.NewDense(80, 16, nil)
	y := mat.NewDense(90, 16, nil)
	for i := 0; i < 80; i++ {
		for j := 0; j < 16; j++ {
			x.Set(i, j, rng.NormFloat64())
		}
	}
	for i := 0; i < 90; i++ {
		for j := 0; j < 16; j++ {
			y.Set(i, j, rng.NormFloat64()+0.5)
		}
	}
	cfg := KIDConfig{Subsets: 20, SubsetSize: 50, Seed: 1}
	a, err := KID(x, y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := KID(x, y, cfg)
	if a != b {
		t.Errorf("same seed gave %v and %v", a, b)
	}
	c, _ := KID(x, y, KIDConfig{Subsets: 20, SubsetSize: 50, Seed: 2})
	if a == c {
		t.Errorf("different seeds gave the same value %v", a)
	}
	x2 := mat.NewDense(70, 16, nil) // another sample of x's distribution
	for i := 0; i < 70; i++ {
		for j := 0; j < 16; j++ {
			x2.Set(i, j, rng.NormFloat64())
		}
	}
	same, _ := KID(x, x2, cfg)
	t.Logf("KID shifted %.4g, same distribution %.4g", a, same)
	if !(a > 0.1) || math.Abs(same) > 0.1*a {
		t.Errorf("KID(shifted) = %v, KID(same set) = %v", a, same)
	}
	// Defaults: m = min(80, 90, 1000) = 80, 100 subsets.
	if _, err := KID(x, y, KIDConfig{}); err != nil {
		t.Error(err)
	}
	_, err = KID(x, mat.NewDense(10, 3, nil), cfg)
	wantErr(t, "dims", err, "feature dimensions differ")
	_, err = KID(x, mat.NewDense(1, 16, nil), cfg)
	wantErr(t, "tiny", err, "at least 2")
	_, _, err = KIDSubsets(x, y, [][]int{{0, 1}}, [][]int{{0, 200}})
	wantErr(t, "index", err, "row index 200 out of range [0, 90)")
	_, _, err = KIDSubsets(x, y, [][]int{{0, 1}}, [][]int{{0, 1, 2}})
	wantErr(t, "sizes", err, "sizes 2 and 3")
}

func TestInceptionScoreProperties(t *testing.T) {
	// One-hot rows over 4 classes, each split covering all 4 classes evenly: score 4.
	p := mat.NewDense(8, 4, nil)
	for i := 0; i < 8; i++ {
		p.Set(i, i%4, 1)
	}
	s, splits, err := InceptionScore(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s-4) > 1e-12 || len(splits) != 2 {
		t.Errorf("one-hot IS = %v (%d splits), want 4 (2 splits)", s, len(splits))
	}
	// Identical rows: score 1.
	u := mat.NewDense(5, 3, []float64{.2, .3, .5, .2, .3, .5, .2, .3, .5, .2, .3, .5, .2, .3, .5})
	if s, _, _ := InceptionScore(u, ADMSplitSize); math.Abs(s-1) > 1e-12 {
		t.Errorf("identical rows IS = %v, want 1", s)
	}
	// Logits that are huge in one class give the one-hot score.
	l := mat.NewDense(8, 4, nil)
	for i := 0; i < 8; i++ {
		l.Set(i, i%4, 800)
	}
	if s, _, err := InceptionScoreLogits(l, 8); err != nil || math.Abs(s-4) > 1e-9 {
		t.Errorf("logits IS = %v, %v; want 4", s, err)
	}
	_, _, err = InceptionScore(p, 0)
	wantErr(t, "split size", err, "split size 0")
	p.Set(3, 2, -0.1)
	_, _, err = InceptionScore(p, 4)
	wantErr(t, "negative", err, "[3,2] = -0.1")
	l.Set(0, 0, math.NaN())
	_, _, err = InceptionScoreLogits(l, 4)
	wantErr(t, "NaN logit", err, "[0,0] = NaN")
}

func TestPrecisionRecallProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := mat.NewDense(300, 8, nil)
	far := mat.NewDense(200, 8, nil)
	for i := 0; i < 300; i++ {
		for j := 0; j < 8; j++ {
			x.Set(i, j, rng.NormFloat64())
		}
	}
	for i := 0; i < 200; i++ {
		for j := 0; j < 8; j++ {
			far.Set(i, j, rng.NormFloat64()+100)
		}
	}
	pr, err := PrecisionRecall(x, x, ADMNeighbourhood)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Precision != 1 || pr.Recall != 1 {
		t.Errorf("same set: P, R = %v, %v; want 1, 1", pr.Precision, pr.Recall)
	}
	pr, err = PrecisionRecall(x, far, ADMNeighbourhood)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Precision != 0 || pr.Recall != 0 {
		t.Errorf("disjoint sets: P, R = %v, %v; want 0, 0", pr.Precision, pr.Recall)
	}
	// Radii: brute force (k+1)-th smallest, and blocks smaller than the matrix.
	r, err := ManifoldRadii(x, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		row := make([]float64, 300)
		for j := range row {
			var s float64
			for k := 0; k < 8; k++ {
				d := x.At(i, k) - x.At(j, k)
				s += d * d
			}
			row[j] = s
		}
		sorted := append([]float64(nil), row...)
		kthSmallest(sorted, 0) // exercise the small path too
		want := sortedKth(row, 5)
		if math.Abs(r[i]-want) > 1e-9*want {
			t.Fatalf("radius %d = %v, want %v", i, r[i], want)
		}
	}
	_, err = ManifoldRadii(x, 300)
	wantErr(t, "k too big", err, "k = 300 with 300 rows")
	_, err = PrecisionRecall(x, mat.NewDense(10, 3, nil), 3)
	wantErr(t, "dims", err, "feature dimensions differ")
}

func sortedKth(v []float64, k int) float64 {
	c := append([]float64(nil), v...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c[k]
}

func TestKthSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(500)
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(rng.IntN(20)) // many ties
		}
		k := rng.IntN(n)
		want := sortedKth(v, k)
		if got := kthSmallest(append([]float64(nil), v...), k); got != want {
			t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, want)
		}
	}
}
