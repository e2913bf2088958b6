package metrics

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// Extractor turns images (uint8, NHWC, RGB) into features; Inception-v3 (FID) is one.
type Extractor interface {
	// ID names the network and its weights (recorded with every metric computed from it).
	ID() string
	// Extract computes the features of n images of h×w pixels, in input order.
	Extract(pix []uint8, n, h, w int, progress func(done, total int)) (*Features, error)
}

// Features are one image set's features, one row per image.
type Features struct {
	N          int
	Pool       []float32 // [N, PoolDim] FID features (pool3)
	PoolDim    int
	Spatial    []float32 // [N, SpatialDim] sFID features; nil when the extractor has none
	SpatialDim int
	Logits     []float32 // [N, LogitDim] classifier logits for the Inception Score; nil when none
	LogitDim   int
}

// Stats summarises features as a reference statistics file (mu, sigma, and mu_s, sigma_s when the
// features have spatial parts).
func (f *Features) Stats() (*RefStats, error) {
	if f.N < 2 {
		return nil, fmt.Errorf("statistics need at least 2 images, got %d", f.N)
	}
	if f.PoolDim < 1 || (f.Spatial != nil && f.SpatialDim < 1) {
		return nil, fmt.Errorf("features of dimension %d (spatial %d): want at least 1", f.PoolDim, f.SpatialDim)
	}
	s := NewStats(f.PoolDim)
	if err := s.AddRows(f.Pool, f.N); err != nil {
		return nil, err
	}
	rs := &RefStats{Mu: s.Mean(), Sigma: s.Cov()}
	if f.Spatial != nil {
		ss := NewStats(f.SpatialDim)
		if err := ss.AddRows(f.Spatial, f.N); err != nil {
			return nil, err
		}
		rs.MuS, rs.SigmaS = ss.Mean(), ss.Cov()
	}
	return rs, nil
}

// Report holds every metric of a generated set against a reference.
type Report struct {
	Extractor string   `json:"extractor"`
	N         int      `json:"n"`
	RefN      int      `json:"ref_n,omitempty"` // 0 when the reference is statistics only
	FID       float64  `json:"fid"`
	SFID      *float64 `json:"sfid,omitempty"`
	IS        *float64 `json:"is,omitempty"`
	Precision *float64 `json:"precision,omitempty"`
	Recall    *float64 `json:"recall,omitempty"`
	KID       *float64 `json:"kid,omitempty"`
	Notes     []string `json:"notes,omitempty"` // why a metric is missing
}

// Evaluate computes the metrics of generated features against a reference: FID always; sFID when
// both sides have spatial statistics; IS when the generated features have logits (split size
// 5000 as the ADM evaluator); precision/recall (k = 3) and KID when reference features are given.
func Evaluate(gen *Features, ref *RefStats, refFeats *Features, extractor string) (*Report, error) {
	st, err := gen.Stats()
	if err != nil {
		return nil, fmt.Errorf("generated set: %w", err)
	}
	if len(ref.Mu) != len(st.Mu) {
		return nil, fmt.Errorf("reference features have %d dimensions, generated %d (different extractors?)", len(ref.Mu), len(st.Mu))
	}
	r := &Report{Extractor: extractor, N: gen.N}
	if r.FID, err = FrechetDistance(st.Mu, st.Sigma, ref.Mu, ref.Sigma); err != nil {
		return nil, fmt.Errorf("FID: %w", err)
	}
	if st.MuS != nil && ref.MuS != nil {
		if len(st.MuS) != len(ref.MuS) {
			return nil, fmt.Errorf("reference spatial features have %d dimensions, generated %d", len(ref.MuS), len(st.MuS))
		}
		v, err := FrechetDistance(st.MuS, st.SigmaS, ref.MuS, ref.SigmaS)
		if err != nil {
			return nil, fmt.Errorf("sFID: %w", err)
		}
		r.SFID = &v
	}
	if gen.Logits != nil {
		v, _, err := InceptionScoreLogits(dense(gen.Logits, gen.N, gen.LogitDim), ADMSplitSize)
		if err != nil {
			return nil, fmt.Errorf("IS: %w", err)
		}
		r.IS = &v
	}
	if refFeats == nil {
		r.Notes = append(r.Notes, "precision/recall and KID need reference features (reference images)")
	} else {
		r.RefN = refFeats.N
		a, b := dense(refFeats.Pool, refFeats.N, refFeats.PoolDim), dense(gen.Pool, gen.N, gen.PoolDim)
		if min(refFeats.N, gen.N) <= ADMNeighbourhood {
			r.Notes = append(r.Notes, fmt.Sprintf("precision/recall need more than k = %d images on each side (have %d generated, %d reference)", ADMNeighbourhood, gen.N, refFeats.N))
		} else {
			pr, err := PrecisionRecall(a, b, ADMNeighbourhood)
			if err != nil {
				return nil, fmt.Errorf("precision/recall: %w", err)
			}
			r.Precision, r.Recall = &pr.Precision, &pr.Recall
		}
		kid, err := KID(b, a, KIDConfig{})
		if err != nil {
			return nil, fmt.Errorf("KID: %w", err)
		}
		r.KID = &kid
	}
	return r, nil
}

// dense views row-major float32 features as a float64 matrix.
func dense(flat []float32, rows, cols int) *mat.Dense {
	d := make([]float64, len(flat))
	for i, v := range flat {
		d[i] = float64(v)
	}
	return mat.NewDense(rows, cols, d)
}
