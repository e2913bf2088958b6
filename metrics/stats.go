package metrics

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// statsChunkRows bounds the rows centred at once, so the scratch buffer of
// AddRows stays small whatever the batch size.
const statsChunkRows = 512

// Stats accumulates the mean and covariance of feature rows in a stream, never holding the features.
//
// Each batch is centred on its own mean in float64 and its scatter matrix
// Σ(x−x̄)(x−x̄)ᵀ is merged into the running one with the pairwise update of
// Chan, Golub and LeVeque:
//
//	n = na + nb,  δ = x̄b − x̄a,  x̄ = x̄a + δ·nb/n,  M = Ma + Mb + δδᵀ·na·nb/n
//
// so the result does not depend on how the rows were batched or sharded,
// up to float64 rounding, and a large common offset in the features costs no
// precision (unlike accumulating Σx and Σxxᵀ).
type Stats struct {
	dim  int
	n    int
	mean []float64
	m2   blas64.Symmetric // upper triangle of the scatter matrix
	bm   []float64        // scratch: batch mean
	xc   []float64        // scratch: centred rows, statsChunkRows×dim
}

// NewStats returns an empty accumulator for features of dimension dim; it panics if dim < 1.
func NewStats(dim int) *Stats {
	if dim < 1 {
		panic(fmt.Sprintf("metrics: NewStats: dimension %d < 1", dim))
	}
	return &Stats{
		dim:  dim,
		mean: make([]float64, dim),
		m2:   blas64.Symmetric{N: dim, Stride: dim, Uplo: blas.Upper, Data: make([]float64, dim*dim)},
		bm:   make([]float64, dim),
	}
}

// Dim returns the feature dimension.
func (s *Stats) Dim() int { return s.dim }

// N returns the number of rows accumulated so far.
func (s *Stats) N() int { return s.n }

// AddRows adds rows feature vectors stored row-major in flat (len(flat) must be rows·Dim()).
func (s *Stats) AddRows(flat []float32, rows int) error {
	if err := s.checkBatch(len(flat), rows); err != nil {
		return err
	}
	for i, v := range flat {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("metrics: Stats.AddRows: non-finite feature %v at row %d, column %d", v, i/s.dim, i%s.dim)
		}
	}
	addRows(s, flat, rows)
	return nil
}

// AddRows64 is AddRows for float64 features.
func (s *Stats) AddRows64(flat []float64, rows int) error {
	if err := s.checkBatch(len(flat), rows); err != nil {
		return err
	}
	for i, v := range flat {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metrics: Stats.AddRows64: non-finite feature %v at row %d, column %d", v, i/s.dim, i%s.dim)
		}
	}
	addRows(s, flat, rows)
	return nil
}

func (s *Stats) checkBatch(n, rows int) error {
	if rows < 0 {
		return fmt.Errorf("metrics: Stats: negative row count %d", rows)
	}
	if n != rows*s.dim {
		return fmt.Errorf("metrics: Stats: batch has %d values, want rows·dim = %d·%d = %d", n, rows, s.dim, rows*s.dim)
	}
	return nil
}

// addRows merges a row-major batch in chunks of at most statsChunkRows rows.
func addRows[T float32 | float64](s *Stats, flat []T, rows int) {
	d := s.dim
	if s.xc == nil && rows > 0 {
		s.xc = make([]float64, min(rows, statsChunkRows)*d)
	}
	for r0 := 0; r0 < rows; r0 += statsChunkRows {
		nb := min(statsChunkRows, rows-r0)
		if len(s.xc) < nb*d {
			s.xc = make([]float64, nb*d)
		}
		xc := s.xc[:nb*d]
		base := r0 * d
		for i, v := range flat[base : base+nb*d] {
			xc[i] = float64(v)
		}
		// Batch mean.
		bm := s.bm
		clear(bm)
		for r := 0; r < nb; r++ {
			row := xc[r*d : (r+1)*d]
			for j, v := range row {
				bm[j] += v
			}
		}
		inv := 1 / float64(nb)
		for j := range bm {
			bm[j] *= inv
		}
		// Centre the batch and add its scatter matrix.
		for r := 0; r < nb; r++ {
			row := xc[r*d : (r+1)*d]
			for j := range row {
				row[j] -= bm[j]
			}
		}
		blas64.Syrk(blas.Trans, 1, blas64.General{Rows: nb, Cols: d, Stride: d, Data: xc}, 1, s.m2)
		s.mergeMoments(nb, bm)
	}
}

// mergeMoments merges the mean of nb rows whose scatter matrix has already
// been added to s.m2, adding the δδᵀ·na·nb/n correction.
func (s *Stats) mergeMoments(nb int, bm []float64) {
	na := s.n
	n := na + nb
	if na == 0 {
		copy(s.mean, bm)
		s.n = n
		return
	}
	delta := make([]float64, s.dim)
	for j := range delta {
		delta[j] = bm[j] - s.mean[j]
	}
	fb := float64(nb) / float64(n)
	for j := range s.mean {
		s.mean[j] += delta[j] * fb
	}
	blas64.Syr(float64(na)*fb, blas64.Vector{N: s.dim, Inc: 1, Data: delta}, s.m2)
	s.n = n
}

// Merge adds the rows accumulated by other (e.g. another shard) to s.
func (s *Stats) Merge(other *Stats) error {
	if other.dim != s.dim {
		return fmt.Errorf("metrics: Stats.Merge: dimension %d, want %d", other.dim, s.dim)
	}
	if other.n == 0 {
		return nil
	}
	for i := 0; i < s.dim; i++ {
		a := s.m2.Data[i*s.dim+i : (i+1)*s.dim]
		b := other.m2.Data[i*s.dim+i : (i+1)*s.dim]
		for j := range a {
			a[j] += b[j]
		}
	}
	bm := append([]float64(nil), other.mean...) // other may be s itself
	s.mergeMoments(other.n, bm)
	return nil
}

// Mean returns a copy of the float64 mean feature vector (NaNs when N() == 0, like np.mean of no rows).
//
// pytorch-fid and the ADM evaluator take np.mean of float32 activations, a
// float32 mean; that rounding is below 1e-7 relative and is not reproduced.
func (s *Stats) Mean() []float64 {
	m := make([]float64, s.dim)
	if s.n == 0 {
		for i := range m {
			m[i] = math.NaN()
		}
		return m
	}
	copy(m, s.mean)
	return m
}

// Cov returns the unbiased (N−1) covariance, as np.cov(x, rowvar=False); all NaN when N() < 2.
func (s *Stats) Cov() *mat.SymDense {
	d := s.dim
	c := mat.NewSymDense(d, nil)
	raw := c.RawSymmetric()
	inv := math.NaN()
	if s.n >= 2 {
		inv = 1 / float64(s.n-1)
	}
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			raw.Data[i*raw.Stride+j] = s.m2.Data[i*d+j] * inv
		}
	}
	return c
}
