package metrics

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// KIDConfig sets the subset sampling of KID; the zero value gives clean-fid's defaults.
type KIDConfig struct {
	Subsets    int    // number of subsets; 0 means 100
	SubsetSize int    // largest subset size m (capped at both row counts); 0 means 1000
	Seed       uint64 // seed of the PCG generator that draws the subsets
}

// KID returns the kernel inception distance of clean-fid's kernel_distance, drawing the subsets from a seeded generator.
//
// KID is the unbiased MMD² with the polynomial kernel k(u,v) = (u·v/n + 1)³
// (n the feature dimension), averaged over subsets of m = min(N1, N2,
// SubsetSize) rows drawn without replacement, feats2 first then feats1 for
// each subset.
//
// The subsets come from a seeded PCG generator, not numpy's legacy
// np.random.choice, so with m < N1 or m < N2 the value differs from
// clean-fid's by subset-sampling noise only; when m equals both row counts
// every subset holds all rows and the value equals clean-fid's to rounding.
// KIDSubsets takes the subsets explicitly (e.g. numpy's own draws).
//
// Cost: three m×m×n matrix products per subset (about 1.2 TFLOP for the
// defaults at n = 2048), so prefer few subsets for quick checks.
func KID(feats1, feats2 mat.Matrix, cfg KIDConfig) (float64, error) {
	n1, d1 := feats1.Dims()
	n2, d2 := feats2.Dims()
	if d1 != d2 {
		return 0, fmt.Errorf("metrics: KID: feature dimensions differ: %d and %d", d1, d2)
	}
	subsets, size := cfg.Subsets, cfg.SubsetSize
	if subsets == 0 {
		subsets = 100
	}
	if size == 0 {
		size = 1000
	}
	if subsets < 0 || size < 0 {
		return 0, fmt.Errorf("metrics: KID: negative subsets (%d) or subset size (%d)", cfg.Subsets, cfg.SubsetSize)
	}
	m := min(n1, n2, size)
	if m < 2 {
		return 0, fmt.Errorf("metrics: KID: subset size %d (rows %d and %d), want at least 2", m, n1, n2)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b6964)) // "kid"
	idx1 := make([][]int, subsets)
	idx2 := make([][]int, subsets)
	for s := range subsets {
		idx2[s] = choose(rng, n2, m)
		idx1[s] = choose(rng, n1, m)
	}
	kid, _, err := KIDSubsets(feats1, feats2, idx1, idx2)
	return kid, err
}

// choose returns m distinct indices out of [0, n) in random order (partial Fisher–Yates).
func choose(rng *rand.Rand, n, m int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := 0; i < m; i++ {
		j := i + rng.IntN(n-i)
		p[i], p[j] = p[j], p[i]
	}
	return p[:m:m]
}

// KIDSubsets returns KID and its per-subset terms t_s for given subsets y = feats1[idx1[s]], x = feats2[idx2[s]] of one size m.
//
// With a = k(x,x) + k(y,y) and b = k(x,y) (m×m),
// t_s = (Σa − tr a)/(m−1) − 2·Σb/m and KID = Σ_s t_s / len(idx1) / m, as in
// clean-fid's kernel_distance.
func KIDSubsets(feats1, feats2 mat.Matrix, idx1, idx2 [][]int) (float64, []float64, error) {
	n1, d := feats1.Dims()
	n2, d2 := feats2.Dims()
	if d != d2 {
		return 0, nil, fmt.Errorf("metrics: KIDSubsets: feature dimensions differ: %d and %d", d, d2)
	}
	if len(idx1) != len(idx2) || len(idx1) == 0 {
		return 0, nil, fmt.Errorf("metrics: KIDSubsets: %d and %d subsets, want the same non-zero number", len(idx1), len(idx2))
	}
	m := len(idx1[0])
	if m < 2 {
		return 0, nil, errors.New("metrics: KIDSubsets: subset size below 2")
	}
	terms := make([]float64, len(idx1))
	x := mat.NewDense(m, d, nil)
	y := mat.NewDense(m, d, nil)
	var kxx, kyy, kxy mat.Dense
	var total float64
	for s := range idx1 {
		if len(idx1[s]) != m || len(idx2[s]) != m {
			return 0, nil, fmt.Errorf("metrics: KIDSubsets: subset %d has sizes %d and %d, want %d", s, len(idx1[s]), len(idx2[s]), m)
		}
		if err := gatherRows(x, feats2, idx2[s], n2); err != nil {
			return 0, nil, fmt.Errorf("metrics: KIDSubsets: subset %d of feats2: %w", s, err)
		}
		if err := gatherRows(y, feats1, idx1[s], n1); err != nil {
			return 0, nil, fmt.Errorf("metrics: KIDSubsets: subset %d of feats1: %w", s, err)
		}
		kxx.Mul(x, x.T())
		kyy.Mul(y, y.T())
		kxy.Mul(x, y.T())
		fd := float64(d)
		var sumA, trA, sumB float64
		for i := 0; i < m; i++ {
			for j := 0; j < m; j++ {
				a := cube(kxx.At(i, j)/fd+1) + cube(kyy.At(i, j)/fd+1)
				sumA += a
				if i == j {
					trA += a
				}
				sumB += cube(kxy.At(i, j)/fd + 1)
			}
		}
		t := (sumA-trA)/float64(m-1) - sumB*2/float64(m)
		terms[s] = t
		total += t
	}
	return total / float64(len(idx1)) / float64(m), terms, nil
}

func cube(v float64) float64 { return v * v * v }

// gatherRows copies src rows idx into dst, checking the indices are in [0, n).
func gatherRows(dst *mat.Dense, src mat.Matrix, idx []int, n int) error {
	_, d := dst.Dims()
	raw, isDense := src.(mat.RawMatrixer)
	for r, i := range idx {
		if i < 0 || i >= n {
			return fmt.Errorf("row index %d out of range [0, %d)", i, n)
		}
		if isDense {
			g := raw.RawMatrix()
			dst.SetRow(r, g.Data[i*g.Stride:i*g.Stride+d])
			continue
		}
		for j := 0; j < d; j++ {
			dst.Set(r, j, src.At(i, j))
		}
	}
	return nil
}
