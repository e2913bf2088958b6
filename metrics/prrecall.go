package metrics

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// ADMNeighbourhood is the ADM evaluator's k for precision/recall (nhood_sizes=(3,)).
const ADMNeighbourhood = 3

// distBlockEntries bounds the entries of one block of the distance matrix (64 MiB of float64).
const distBlockEntries = 1 << 23

// PR holds improved precision/recall and the per-point decisions behind it.
type PR struct {
	Precision   float64   // fraction of samples inside the reference manifold
	Recall      float64   // fraction of reference points inside the sample manifold
	RefRadii    []float64 // squared k-NN radius of each reference point
	SampleRadii []float64 // squared k-NN radius of each sample
	SampleInRef []bool    // per sample: within the radius of some reference point
	RefInSample []bool    // per reference point: within the radius of some sample
}

// PrecisionRecall returns improved precision/recall (Kynkäänniemi et al.) with the ADM evaluator's ManifoldEstimator semantics.
//
// Distances are squared Euclidean, max(|u|² − 2u·v + |v|², 0). A point's
// radius is the (k+1)-th smallest entry of its row of distances to its own
// set, self included (so the k-th nearest other point). A sample is precise
// when its distance to some reference point is ≤ that point's radius; a
// reference point is recalled when its distance to some sample is ≤ that
// sample's radius. The reference evaluates distances in float16 (float32 as a
// fallback); this computes them in float64, which changes no decision on the
// golden data. Memory stays bounded: distances are computed in row blocks.
func PrecisionRecall(ref, sample mat.Matrix, k int) (*PR, error) {
	nr, dr := ref.Dims()
	ns, ds := sample.Dims()
	if dr != ds {
		return nil, fmt.Errorf("metrics: PrecisionRecall: feature dimensions differ: %d and %d", dr, ds)
	}
	rr, err := ManifoldRadii(ref, k)
	if err != nil {
		return nil, fmt.Errorf("metrics: PrecisionRecall: reference: %w", err)
	}
	rs, err := ManifoldRadii(sample, k)
	if err != nil {
		return nil, fmt.Errorf("metrics: PrecisionRecall: samples: %w", err)
	}
	pr := &PR{RefRadii: rr, SampleRadii: rs, SampleInRef: make([]bool, ns), RefInSample: make([]bool, nr)}
	pairwiseBlocks(ref, sample, func(i0 int, block *mat.Dense) {
		rows, _ := block.Dims()
		for bi := 0; bi < rows; bi++ {
			i := i0 + bi
			row := block.RawRowView(bi)
			for j, dist := range row {
				if dist <= rr[i] {
					pr.SampleInRef[j] = true
				}
				if dist <= rs[j] {
					pr.RefInSample[i] = true
				}
			}
		}
	})
	pr.Precision = fraction(pr.SampleInRef)
	pr.Recall = fraction(pr.RefInSample)
	return pr, nil
}

// ManifoldRadii returns, for each row of feats, the (k+1)-th smallest squared distance to the rows of feats (self included), as ManifoldEstimator.manifold_radii.
func ManifoldRadii(feats mat.Matrix, k int) ([]float64, error) {
	n, _ := feats.Dims()
	if k < 1 || k >= n {
		return nil, fmt.Errorf("metrics: ManifoldRadii: k = %d with %d rows, want 1 ≤ k < rows", k, n)
	}
	if err := checkFiniteMatrix("features", feats); err != nil {
		return nil, err
	}
	radii := make([]float64, n)
	scratch := make([]float64, n)
	pairwiseBlocks(feats, feats, func(i0 int, block *mat.Dense) {
		rows, _ := block.Dims()
		for bi := 0; bi < rows; bi++ {
			copy(scratch, block.RawRowView(bi))
			radii[i0+bi] = kthSmallest(scratch, k)
		}
	})
	return radii, nil
}

// pairwiseBlocks calls f with consecutive row blocks of the squared-distance matrix D(a, b), starting at row i0 of a.
func pairwiseBlocks(a, b mat.Matrix, f func(i0 int, block *mat.Dense)) {
	na, d := a.Dims()
	nb, _ := b.Dims()
	normA := rowNorms2(a)
	normB := rowNorms2(b)
	bd := mat.DenseCopyOf(b)
	rowsPer := max(1, min(na, distBlockEntries/max(nb, 1)))
	var block mat.Dense
	for i0 := 0; i0 < na; i0 += rowsPer {
		i1 := min(i0+rowsPer, na)
		ab := mat.NewDense(i1-i0, d, nil)
		for i := i0; i < i1; i++ {
			for j := 0; j < d; j++ {
				ab.Set(i-i0, j, a.At(i, j))
			}
		}
		block.Reset()
		block.Mul(ab, bd.T())
		for bi := 0; bi < i1-i0; bi++ {
			row := block.RawRowView(bi)
			na2 := normA[i0+bi]
			for j, g := range row {
				row[j] = math.Max(na2-2*g+normB[j], 0)
			}
		}
		f(i0, &block)
	}
}

func rowNorms2(m mat.Matrix) []float64 {
	n, d := m.Dims()
	out := make([]float64, n)
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < d; j++ {
			v := m.At(i, j)
			s += v * v
		}
		out[i] = s
	}
	return out
}

// kthSmallest returns the k-th smallest (0-based) value of v, reordering v.
func kthSmallest(v []float64, k int) float64 {
	if len(v) <= 64 {
		slices.Sort(v)
		return v[k]
	}
	lo, hi := 0, len(v)-1
	for lo < hi {
		// Median-of-three pivot, Hoare partition.
		mid := lo + (hi-lo)/2
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		p := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

func fraction(b []bool) float64 {
	if len(b) == 0 {
		return math.NaN()
	}
	var n int
	for _, x := range b {
		if x {
			n++
		}
	}
	return float64(n) / float64(len(b))
}

func checkFiniteMatrix(name string, m mat.Matrix) error {
	r, c := m.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			if x := m.At(i, j); math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("metrics: %s[%d,%d] = %v, want finite values", name, i, j, x)
			}
		}
	}
	return nil
}
