package metrics

import (
	"encoding/json"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/models/checkpoint"
	"gonum.org/v1/gonum/mat"
)

// The golden file (testdata/fid, see its README) holds the
// pytorch-fid / clean-fid / ADM evaluator outputs on synthetic features.
const goldenPath = "../testdata/fid/metrics.safetensors"

var (
	goldenOnce sync.Once
	goldenFile *checkpoint.File
	goldenErr  error
)

func golden(t testing.TB) *checkpoint.File {
	t.Helper()
	goldenOnce.Do(func() { goldenFile, goldenErr = checkpoint.Load(goldenPath) })
	if goldenErr != nil {
		t.Fatal(goldenErr)
	}
	return goldenFile
}

// gTensor returns a golden tensor as float64 with its shape.
func gTensor(t testing.TB, name string) ([]float64, []int) {
	t.Helper()
	tt, err := golden(t).Get(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tt.Float64()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v, tt.Shape
}

func gScalar(t testing.TB, name string) float64 {
	t.Helper()
	v, shape := gTensor(t, name)
	if len(shape) != 0 || len(v) != 1 {
		t.Fatalf("%s: shape %v, want a scalar", name, shape)
	}
	return v[0]
}

func gDense(t testing.TB, name string) *mat.Dense {
	t.Helper()
	v, shape := gTensor(t, name)
	if len(shape) != 2 {
		t.Fatalf("%s: shape %v, want 2-D", name, shape)
	}
	return mat.NewDense(shape[0], shape[1], v)
}

func gSym(t testing.TB, name string) *mat.SymDense {
	t.Helper()
	d := gDense(t, name)
	n, _ := d.Dims()
	s := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			s.SetSym(i, j, d.At(i, j))
		}
	}
	return s
}

func gIndices(t testing.TB, name string) [][]int {
	t.Helper()
	tt, err := golden(t).Get(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tt.Int64()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rows, cols := tt.Shape[0], tt.Shape[1]
	out := make([][]int, rows)
	for i := range out {
		out[i] = make([]int, cols)
		for j := range out[i] {
			out[i][j] = int(v[i*cols+j])
		}
	}
	return out
}

func relErr(got, want float64) float64 {
	return math.Abs(got-want) / math.Max(math.Abs(want), math.SmallestNonzeroFloat64)
}

// TestGoldenMeta checks that the scalars in meta.json and the safetensors agree (both are copies of the shared golden).
func TestGoldenMeta(t *testing.T) {
	raw, err := os.ReadFile("../testdata/fid/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]map[string]any
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ tensor, group, key string }{
		{"frechet_a.fid", "frechet_a", "fid"},
		{"frechet_rank_deficient.fid", "frechet_rank_deficient", "fid"},
		{"kid.kid", "kid", "kid"},
		{"is_10splits.inception_score", "is_10splits", "inception_score"},
		{"pr.precision", "pr", "precision"},
	} {
		if got, want := gScalar(t, c.tensor), meta[c.group][c.key].(float64); got != want {
			t.Errorf("%s = %v, meta.json says %v", c.tensor, got, want)
		}
	}
}

func TestGoldenFrechet(t *testing.T) {
	for _, c := range []struct {
		name   string
		relTol float64 // on FID and tr_covmean
		absTol float64 // on FID
	}{
		{"frechet_a", 1e-6, math.Inf(1)},
		{"frechet_rank_deficient", 1e-6, math.Inf(1)},
		{"frechet_identical", 1e-6, 1e-9},
	} {
		t.Run(c.name, func(t *testing.T) {
			f1 := gDense(t, c.name+".feats1")
			f2 := f1
			if c.name != "frechet_identical" {
				f2 = gDense(t, c.name+".feats2")
			}
			mu1, _ := gTensor(t, c.name+".mu1")
			mu2, _ := gTensor(t, c.name+".mu2")
			s1, s2 := gSym(t, c.name+".sigma1"), gSym(t, c.name+".sigma2")
			want := gScalar(t, c.name+".fid")
			wantTr := gScalar(t, c.name+".tr_covmean")

			// From the golden mu/sigma.
			got, err := FrechetDistance(mu1, s1, mu2, s2)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := TraceSqrtProduct(s1, s2)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, got float64) {
				t.Helper()
				ae, re := math.Abs(got-want), relErr(got, want)
				t.Logf("%s: FID %.15g, want %.15g: abs err %.3g, rel err %.3g", what, got, want, ae, re)
				if c.absTol < math.Inf(1) {
					if ae > c.absTol {
						t.Errorf("%s: abs err %.3g > %.3g", what, ae, c.absTol)
					}
				} else if re > c.relTol {
					t.Errorf("%s: rel err %.3g > %.3g", what, re, c.relTol)
				}
			}
			check("golden stats", got)
			if re := relErr(tr, wantTr); re > c.relTol {
				t.Errorf("tr_covmean %.15g, want %.15g: rel err %.3g", tr, wantTr, re)
			} else {
				t.Logf("tr_covmean rel err %.3g", re)
			}
			// The eigenvector route of the brief (√σ1 from an eigendecomposition) agrees as well.
			if trE := traceSqrtProductEig(t, s1, s2); relErr(trE, wantTr) > c.relTol {
				t.Errorf("eigen route tr_covmean %.15g, want %.15g", trE, wantTr)
			}
			// Swapping the arguments gives the same distance.
			if sw, err := FrechetDistance(mu2, s2, mu1, s1); err != nil || math.Abs(sw-got) > 1e-9*math.Max(1, math.Abs(got)) {
				t.Errorf("swapped: %v, %v; want %v", sw, err, got)
			}

			// From the features, through Stats (mean and unbiased covariance).
			st1, st2 := statsOf(t, f1, 7), statsOf(t, f2, 3)
			compareVec(t, "mu1", st1.Mean(), mu1, 1e-12)
			compareVec(t, "mu2", st2.Mean(), mu2, 1e-12)
			compareSym(t, "sigma1", st1.Cov(), s1, 1e-12)
			compareSym(t, "sigma2", st2.Cov(), s2, 1e-12)
			got2, err := FrechetDistance(st1.Mean(), st1.Cov(), st2.Mean(), st2.Cov())
			if err != nil {
				t.Fatal(err)
			}
			check("streamed stats", got2)
		})
	}
}

// statsOf streams the rows of f into a Stats in batches of batch rows.
func statsOf(t testing.TB, f *mat.Dense, batch int) *Stats {
	t.Helper()
	n, d := f.Dims()
	s := NewStats(d)
	for r0 := 0; r0 < n; r0 += batch {
		r1 := min(r0+batch, n)
		flat := make([]float64, 0, (r1-r0)*d)
		for i := r0; i < r1; i++ {
			flat = append(flat, f.RawRowView(i)...)
		}
		if err := s.AddRows64(flat, r1-r0); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func compareVec(t testing.TB, name string, got, want []float64, tol float64) {
	t.Helper()
	var scale, e float64
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		e = math.Max(e, math.Abs(got[i]-want[i]))
	}
	if e > tol*math.Max(scale, 1e-300) {
		t.Errorf("%s: max abs err %.3g (scale %.3g) > rel %.1g", name, e, scale, tol)
	}
}

func compareSym(t testing.TB, name string, got, want mat.Symmetric, tol float64) {
	t.Helper()
	n := want.SymmetricDim()
	var scale, e float64
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			scale = math.Max(scale, math.Abs(want.At(i, j)))
			e = math.Max(e, math.Abs(got.At(i, j)-want.At(i, j)))
		}
	}
	if e > tol*math.Max(scale, 1e-300) {
		t.Errorf("%s: max abs err %.3g (scale %.3g) > rel %.1g", name, e, scale, tol)
	}
}

// traceSqrtProductEig is the brief's formulation, used as an independent
// oracle: σ1 = UΛUᵀ, S = UΛ^½Uᵀ (negative λ clipped), tr √(Sσ2S).
func traceSqrtProductEig(t testing.TB, s1, s2 mat.Symmetric) float64 {
	t.Helper()
	var e mat.EigenSym
	if !e.Factorize(s1, true) {
		t.Fatal("eigen factorisation failed")
	}
	lam := e.Values(nil)
	var u mat.Dense
	e.VectorsTo(&u)
	n := len(lam)
	d := mat.NewDiagDense(n, nil)
	for i, l := range lam {
		d.SetDiag(i, math.Sqrt(math.Max(l, 0)))
	}
	var s, tmp, m mat.Dense
	tmp.Mul(&u, d)
	s.Mul(&tmp, u.T())
	tmp.Mul(&s, s2)
	m.Mul(&tmp, &s)
	ms := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			ms.SetSym(i, j, 0.5*(m.At(i, j)+m.At(j, i)))
		}
	}
	var e2 mat.EigenSym
	if !e2.Factorize(ms, false) {
		t.Fatal("eigen factorisation failed")
	}
	var tr float64
	for _, v := range e2.Values(nil) {
		tr += math.Sqrt(math.Max(v, 0))
	}
	return tr
}

func TestGoldenKID(t *testing.T) {
	// kid: the reference's own subsets (numpy legacy RNG, seed 202).
	f1, f2 := gDense(t, "kid.feats1"), gDense(t, "kid.feats2")
	idx1, idx2 := gIndices(t, "kid.subset_idx_feats1"), gIndices(t, "kid.subset_idx_feats2")
	want := gScalar(t, "kid.kid")
	wantTerms, _ := gTensor(t, "kid.subset_terms")
	got, terms, err := KIDSubsets(f1, f2, idx1, idx2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kid: %.15g, want %.15g, rel err %.3g", got, want, relErr(got, want))
	if relErr(got, want) > 1e-12 {
		t.Errorf("kid = %.15g, want %.15g", got, want)
	}
	for s := range wantTerms {
		if e := math.Abs(terms[s] - wantTerms[s]); e > 1e-10*math.Max(1, math.Abs(wantTerms[s])) {
			t.Errorf("subset %d term %.15g, want %.15g", s, terms[s], wantTerms[s])
		}
	}
	// Our own sampling (PCG) estimates the same quantity: check it is in the
	// spread of the reference's subset terms, not equal.
	own, err := KID(f1, f2, KIDConfig{Subsets: 10, SubsetSize: 50, Seed: 202})
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range wantTerms {
		lo, hi = math.Min(lo, v/50), math.Max(hi, v/50)
	}
	if own < lo || own > hi {
		t.Errorf("KID with PCG subsets %.6g outside the reference's per-subset range [%.6g, %.6g]", own, lo, hi)
	}

	// kid_full: one subset holding every row, independent of the sampling.
	ff1, ff2 := gDense(t, "kid_full.feats1"), gDense(t, "kid_full.feats2")
	wantFull := gScalar(t, "kid_full.kid")
	gotFull, err := KID(ff1, ff2, KIDConfig{Subsets: 1, SubsetSize: 1000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kid_full: %.15g, want %.15g, rel err %.3g", gotFull, wantFull, relErr(gotFull, wantFull))
	if relErr(gotFull, wantFull) > 1e-12 {
		t.Errorf("kid_full = %.15g, want %.15g", gotFull, wantFull)
	}
}

func TestGoldenInceptionScore(t *testing.T) {
	probs := gDense(t, "is_10splits.probs")
	logits := gDense(t, "is_10splits.logits")
	for _, c := range []struct {
		name      string
		splitSize int
		nSplits   int
	}{
		{"is_10splits", 20, 10},
		{"is_ragged", 30, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := gScalar(t, c.name+".inception_score")
			wantSplits, _ := gTensor(t, c.name+".split_scores")
			got, splits, err := InceptionScore(probs, c.splitSize)
			if err != nil {
				t.Fatal(err)
			}
			if len(splits) != c.nSplits || len(wantSplits) != c.nSplits {
				t.Fatalf("%d splits (golden %d), want %d", len(splits), len(wantSplits), c.nSplits)
			}
			t.Logf("from probs: IS %.10g, want %.10g, rel err %.3g", got, want, relErr(got, want))
			if relErr(got, want) > 1e-6 {
				t.Errorf("IS from probs = %.10g, want %.10g (rel tol 1e-6)", got, want)
			}
			for k := range splits {
				if relErr(splits[k], wantSplits[k]) > 1e-6 {
					t.Errorf("split %d = %.10g, want %.10g", k, splits[k], wantSplits[k])
				}
			}
			gotL, _, err := InceptionScoreLogits(logits, c.splitSize)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("from logits: IS %.10g, rel err %.3g", gotL, relErr(gotL, want))
			if relErr(gotL, want) > 2e-6 {
				t.Errorf("IS from logits = %.10g, want %.10g (rel tol 2e-6)", gotL, want)
			}
		})
	}
}

func TestGoldenPrecisionRecall(t *testing.T) {
	ref, sample := gDense(t, "pr.ref_features"), gDense(t, "pr.sample_features")
	pr, err := PrecisionRecall(ref, sample, ADMNeighbourhood)
	if err != nil {
		t.Fatal(err)
	}
	wantP, wantR := gScalar(t, "pr.precision"), gScalar(t, "pr.recall")
	t.Logf("precision %v (want %v), recall %v (want %v)", pr.Precision, wantP, pr.Recall, wantR)
	if pr.Precision != wantP || pr.Recall != wantR {
		t.Errorf("precision, recall = %v, %v; want %v, %v exactly", pr.Precision, pr.Recall, wantP, wantR)
	}
	for _, c := range []struct {
		name string
		got  []bool
	}{{"pr.sample_in_ref_manifold", pr.SampleInRef}, {"pr.ref_in_sample_manifold", pr.RefInSample}} {
		want, _ := gTensor(t, c.name)
		if len(want) != len(c.got) {
			t.Fatalf("%s: %d entries, want %d", c.name, len(c.got), len(want))
		}
		for i := range want {
			if c.got[i] != (want[i] != 0) {
				t.Errorf("%s[%d] = %v, want %v", c.name, i, c.got[i], want[i] != 0)
			}
		}
	}
	for _, c := range []struct {
		name string
		got  []float64
	}{{"pr.radii_ref", pr.RefRadii}, {"pr.radii_sample", pr.SampleRadii}} {
		want, _ := gTensor(t, c.name)
		var worst float64
		for i := range want {
			worst = math.Max(worst, relErr(c.got[i], want[i]))
		}
		t.Logf("%s: max rel err %.3g", c.name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: max rel err %.3g > 1e-5", c.name, worst)
		}
	}
}
