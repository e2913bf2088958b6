package metrics

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// ADMSplitSize is the ADM evaluator's Inception Score split size: 10 splits at 50,000 samples.
const ADMSplitSize = 5000

// InceptionScore returns the ADM evaluator's Inception Score of class probabilities (one row per sample) and the score of each split.
//
// The rows are cut into consecutive splits of splitSize rows (the last one may
// be shorter); each split scores exp(mean_i Σ_j p_ij·(log p_ij − log p̄_j)) with
// p̄ the split's mean row, and the result is the mean of the split scores.
// The arithmetic is float64, where the reference's numpy code runs in float32
// (differences below 1e-6 relative); a probability of exactly 0 contributes 0
// (its limit), where numpy would produce NaN.
func InceptionScore(probs mat.Matrix, splitSize int) (float64, []float64, error) {
	n, c := probs.Dims()
	if n == 0 || c == 0 {
		return 0, nil, fmt.Errorf("metrics: InceptionScore: empty %d×%d input", n, c)
	}
	if splitSize < 1 {
		return 0, nil, fmt.Errorf("metrics: InceptionScore: split size %d, want ≥ 1", splitSize)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			if p := probs.At(i, j); !(p >= 0) || math.IsInf(p, 1) {
				return 0, nil, fmt.Errorf("metrics: InceptionScore: probability [%d,%d] = %v, want finite and ≥ 0", i, j, p)
			}
		}
	}
	var scores []float64
	mean := make([]float64, c)
	logMean := make([]float64, c)
	for s0 := 0; s0 < n; s0 += splitSize {
		s1 := min(s0+splitSize, n)
		clear(mean)
		for i := s0; i < s1; i++ {
			for j := 0; j < c; j++ {
				mean[j] += probs.At(i, j)
			}
		}
		for j := range mean {
			mean[j] /= float64(s1 - s0)
			logMean[j] = math.Log(mean[j])
		}
		var kl float64
		for i := s0; i < s1; i++ {
			var row float64
			for j := 0; j < c; j++ {
				if p := probs.At(i, j); p > 0 {
					row += p * (math.Log(p) - logMean[j])
				}
			}
			kl += row
		}
		scores = append(scores, math.Exp(kl/float64(s1-s0)))
	}
	var sum float64
	for _, s := range scores {
		sum += s
	}
	return sum / float64(len(scores)), scores, nil
}

// InceptionScoreLogits applies a float64 row softmax to logits and returns InceptionScore of the result.
//
// For the ADM evaluator, the logits are pool_3 features times the
// softmax/logits/MatMul weight with no bias.
func InceptionScoreLogits(logits mat.Matrix, splitSize int) (float64, []float64, error) {
	n, c := logits.Dims()
	probs := mat.NewDense(max(n, 1), max(c, 1), nil)
	if n == 0 || c == 0 {
		return 0, nil, fmt.Errorf("metrics: InceptionScoreLogits: empty %d×%d input", n, c)
	}
	row := make([]float64, c)
	for i := 0; i < n; i++ {
		mx := math.Inf(-1)
		for j := 0; j < c; j++ {
			v := logits.At(i, j)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, nil, fmt.Errorf("metrics: InceptionScoreLogits: logit [%d,%d] = %v, want finite", i, j, v)
			}
			row[j] = v
			mx = math.Max(mx, v)
		}
		var z float64
		for j := range row {
			row[j] = math.Exp(row[j] - mx)
			z += row[j]
		}
		for j := range row {
			row[j] /= z
		}
		probs.SetRow(i, row)
	}
	return InceptionScore(probs, splitSize)
}
