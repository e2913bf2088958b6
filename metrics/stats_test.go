package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// twoPass returns the mean and unbiased covariance of the rows of flat (n×d) by the textbook two-pass formula in float64.
func twoPass(flat []float32, n, d int) ([]float64, *mat.SymDense) {
	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mean[j] += float64(flat[i*d+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	cov := mat.NewSymDense(d, nil)
	for a := 0; a < d; a++ {
		for b := a; b < d; b++ {
			var s float64
			for i := 0; i < n; i++ {
				s += (float64(flat[i*d+a]) - mean[a]) * (float64(flat[i*d+b]) - mean[b])
			}
			cov.SetSym(a, b, s/float64(n-1))
		}
	}
	return mean, cov
}

// testFeatures returns n×d float32 features with a large common offset and unequal scales, which defeats Σx/Σx² accumulation.
func testFeatures(seed uint64, n, d int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 99))
	mix := make([]float64, d*d)
	for i := range mix {
		mix[i] = rng.NormFloat64() / math.Sqrt(float64(d))
	}
	flat := make([]float32, n*d)
	z := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := range z {
			z[j] = rng.NormFloat64()
		}
		for j := 0; j < d; j++ {
			v := 1000.0 + 50*float64(j)
			for k := 0; k < d; k++ {
				v += mix[j*d+k] * z[k] * (1 + float64(k%5))
			}
			flat[i*d+j] = float32(v)
		}
	}
	return flat
}

// maxRelDiff returns max|a−b| / max|b| over the upper triangles.
func maxRelDiff(a, b mat.Symmetric) float64 {
	n := b.SymmetricDim()
	var e, scale float64
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			e = math.Max(e, math.Abs(a.At(i, j)-b.At(i, j)))
			scale = math.Max(scale, math.Abs(b.At(i, j)))
		}
	}
	return e / scale
}

func maxRelDiffVec(a, b []float64) float64 {
	var e, scale float64
	for i := range b {
		e = math.Max(e, math.Abs(a[i]-b[i]))
		scale = math.Max(scale, math.Abs(b[i]))
	}
	return e / scale
}

// TestStatsStreaming: ten batches, uneven batches and merged shards give the
// one-batch mean and covariance to float64 rounding.
func TestStatsStreaming(t *testing.T) {
	const n, d = 1000, 24
	flat := testFeatures(1, n, d)
	wantMu, wantCov := twoPass(flat, n, d)

	one := NewStats(d)
	if err := one.AddRows(flat, n); err != nil {
		t.Fatal(err)
	}
	ten := NewStats(d)
	for b := 0; b < 10; b++ {
		if err := ten.AddRows(flat[b*100*d:(b+1)*100*d], 100); err != nil {
			t.Fatal(err)
		}
	}
	uneven := NewStats(d)
	for r0, size := 0, 1; r0 < n; size = size*3 + 1 {
		r1 := min(r0+size, n)
		if err := uneven.AddRows(flat[r0*d:r1*d], r1-r0); err != nil {
			t.Fatal(err)
		}
		r0 = r1
	}
	// Three shards merged, one of them empty, plus a zero-row batch.
	shards := []*Stats{NewStats(d), NewStats(d), NewStats(d)}
	if err := shards[0].AddRows(flat[:337*d], 337); err != nil {
		t.Fatal(err)
	}
	if err := shards[1].AddRows(flat[337*d:], n-337); err != nil {
		t.Fatal(err)
	}
	if err := shards[1].AddRows(nil, 0); err != nil {
		t.Fatal(err)
	}
	merged := NewStats(d)
	for _, s := range shards {
		if err := merged.Merge(s); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name string
		s    *Stats
	}{{"one batch", one}, {"10 batches", ten}, {"uneven batches", uneven}, {"merged shards", merged}} {
		if c.s.N() != n {
			t.Errorf("%s: N = %d, want %d", c.name, c.s.N(), n)
		}
		em, ec := maxRelDiffVec(c.s.Mean(), wantMu), maxRelDiff(c.s.Cov(), wantCov)
		eo := maxRelDiff(c.s.Cov(), one.Cov())
		t.Logf("%s: mean rel err %.2g, cov rel err %.2g vs two-pass, %.2g vs one batch", c.name, em, ec, eo)
		if em > 1e-14 || ec > 1e-13 || eo > 1e-13 {
			t.Errorf("%s: mean rel err %.2g (tol 1e-14), cov rel err %.2g / %.2g (tol 1e-13)", c.name, em, ec, eo)
		}
	}
}

// TestStatsNaiveWouldFail documents why the centred update matters: the Σx, Σxxᵀ formula loses digits on this data.
func TestStatsNaiveWouldFail(t *testing.T) {
	const n, d = 1000, 4
	flat := testFeatures(2, n, d)
	for i := range flat {
		flat[i] += 1e5
	}
	_, want := twoPass(flat, n, d)
	s := NewStats(d)
	for b := 0; b < 10; b++ {
		if err := s.AddRows(flat[b*100*d:(b+1)*100*d], 100); err != nil {
			t.Fatal(err)
		}
	}
	naive := mat.NewSymDense(d, nil)
	for a := 0; a < d; a++ {
		for b := a; b < d; b++ {
			var sa, sb, sab float64
			for i := 0; i < n; i++ {
				x, y := float64(flat[i*d+a]), float64(flat[i*d+b])
				sa, sb, sab = sa+x, sb+y, sab+x*y
			}
			naive.SetSym(a, b, (sab-sa*sb/n)/(n-1))
		}
	}
	got, bad := maxRelDiff(s.Cov(), want), maxRelDiff(naive, want)
	t.Logf("streamed rel err %.2g, naive Σxxᵀ rel err %.2g", got, bad)
	if got > 1e-12 || bad < 1000*got {
		t.Errorf("streamed covariance rel err %.2g (tol 1e-12), naive %.2g", got, bad)
	}
}

func TestStatsSelfMergeAndEmpty(t *testing.T) {
	s := NewStats(3)
	if !math.IsNaN(s.Mean()[0]) || !math.IsNaN(s.Cov().At(0, 0)) {
		t.Error("empty Stats: want NaN mean and covariance")
	}
	flat := []float32{1, 2, 3, 4, 5, 7, -1, 0, 2}
	if err := s.AddRows(flat, 3); err != nil {
		t.Fatal(err)
	}
	c1 := s.Cov()
	if err := s.Merge(s); err != nil {
		t.Fatal(err)
	}
	// Duplicating every row keeps the mean and scales the unbiased covariance by (2n−2)/(2n−1).
	if s.N() != 6 {
		t.Fatalf("N = %d, want 6", s.N())
	}
	want := 4.0 / 5.0
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			if g := s.Cov().At(i, j); math.Abs(g-c1.At(i, j)*want) > 1e-14 {
				t.Errorf("cov[%d,%d] = %v, want %v", i, j, g, c1.At(i, j)*want)
			}
		}
	}
}

func TestStatsErrors(t *testing.T) {
	s := NewStats(3)
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"short batch", s.AddRows(make([]float32, 5), 2), "want rows·dim"},
		{"negative rows", s.AddRows(nil, -1), "negative row count"},
		{"NaN", s.AddRows([]float32{1, 2, float32(math.NaN())}, 1), "row 0, column 2"},
		{"Inf64", s.AddRows64([]float64{1, math.Inf(1), 0, 1, 1, 1}, 2), "non-finite"},
		{"merge dims", s.Merge(NewStats(4)), "dimension 4, want 3"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
	if s.N() != 0 {
		t.Errorf("rejected batches changed N to %d", s.N())
	}
	defer func() {
		if recover() == nil {
			t.Error("NewStats(0) did not panic")
		}
	}()
	NewStats(0)
}
