package clip

import (
	"fmt"
	"math"
)

// Scores are the CLIP scores of image-caption pairs under the conventions in use.
type Scores struct {
	// Cosine is cos(image_i, text_i) per pair.
	Cosine []float64
	// Mean is torchmetrics' CLIPScore: max(mean_i(100·cos_i), 0). It clamps the mean, not each
	// pair, although its docstring writes max(100·cos, 0).
	Mean float64
	// MeanPerPairClamped is mean_i(max(100·cos_i, 0)), the per-pair clamp of that docstring.
	MeanPerPairClamped float64
}

// Score computes the CLIP scores of pairs (image i, text i) from unnormalised features
// [n, dim] as the encoders return them.
func Score(imageFeats, textFeats []float32, dim int) (Scores, error) {
	if dim <= 0 || len(imageFeats) == 0 || len(imageFeats)%dim != 0 || len(imageFeats) != len(textFeats) {
		return Scores{}, fmt.Errorf("clip score: %d image and %d text feature values, want the same positive multiple of the width %d", len(imageFeats), len(textFeats), dim)
	}
	n := len(imageFeats) / dim
	s := Scores{Cosine: make([]float64, n)}
	var sum, sumClamped float64
	for i := range n {
		c := cosine(imageFeats[i*dim:(i+1)*dim], textFeats[i*dim:(i+1)*dim])
		if math.IsNaN(c) {
			return Scores{}, fmt.Errorf("clip score: pair %d has a zero or non-finite feature vector", i)
		}
		s.Cosine[i] = c
		sum += 100 * c
		sumClamped += max(100*c, 0)
	}
	s.Mean = max(sum/float64(n), 0)
	s.MeanPerPairClamped = sumClamped / float64(n)
	return s, nil
}

// cosine of two vectors in float64 (NaN when either is zero).
func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	return dot / math.Sqrt(na*nb)
}
