package metrics

import (
	"fmt"
	"math"
)

// Paired fidelity compares sample i of a run with sample i of the uncached run started from the
// same noise, so it measures how far caching moves each image rather than how realistic the
// images are.

// PSNR is the peak signal-to-noise ratio 10·log10(dataRange² / MSE) in dB between two images of
// the same layout, computed in float64 (as skimage's peak_signal_noise_ratio).
//
// Identical images give +Inf: averaging over samples must cap each value first (harness.MaxPSNR
// caps at 100 dB) or average the MSEs instead, or one exact sample makes the mean +Inf.
// Mismatched or empty inputs and a dataRange ≤ 0 give NaN, which no comparison accepts.
func PSNR(a, b []float32, dataRange float64) float64 {
	if len(a) != len(b) || len(a) == 0 || !(dataRange > 0) {
		return math.NaN()
	}
	var sum float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		sum += d * d
	}
	mse := sum / float64(len(a))
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(dataRange*dataRange/mse)
}

// SSIM constants of Wang et al. 2004 with Gaussian weights (skimage's gaussian_weights=True).
const (
	ssimSigma  = 1.5
	ssimRadius = 5 // scipy's int(truncate·σ + 0.5) with skimage's truncate 3.5: an 11×11 window
	ssimK1     = 0.01
	ssimK2     = 0.03
)

// SSIM is the mean structural similarity of two images laid out as channel planes [channels, h,
// w], averaged over channels: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), K1 =
// 0.01, K2 = 0.03 and population (not sample) covariances, computed in float64. It equals
// skimage's structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
// use_sample_covariance=False, data_range=dataRange, channel_axis=0).
//
// skimage filters with reflect padding and then averages the SSIM map without its 5-pixel
// border; every pixel kept is one whose window lies wholly inside the image, so the padding
// never enters the result and SSIM simply averages the (h−10)×(w−10) valid positions. Like
// skimage it needs h, w ≥ 11.
func SSIM(a, b []float32, h, w, channels int, dataRange float64) (float64, error) {
	const win = 2*ssimRadius + 1
	switch {
	case h < win || w < win || channels < 1:
		return 0, fmt.Errorf("ssim: %d channels of %d×%d pixels, want ≥ 1 channel and at least %d×%d pixels (the Gaussian window)", channels, h, w, win, win)
	case int64(len(a)) != int64(channels)*int64(h)*int64(w) || len(b) != len(a):
		return 0, fmt.Errorf("ssim: images of %d and %d values, want %d each (%d channels × %d × %d)", len(a), len(b), int64(channels)*int64(h)*int64(w), channels, h, w)
	case !(dataRange > 0) || math.IsInf(dataRange, 0):
		return 0, fmt.Errorf("ssim: data range %v, want a positive finite value", dataRange)
	}
	var kern [win]float64
	var ksum float64
	for i := range kern {
		x := float64(i - ssimRadius)
		kern[i] = math.Exp(-0.5 * x * x / (ssimSigma * ssimSigma))
		ksum += kern[i]
	}
	for i := range kern {
		kern[i] /= ksum
	}
	c1, c2 := (ssimK1*dataRange)*(ssimK1*dataRange), (ssimK2*dataRange)*(ssimK2*dataRange)
	ho, wo := h-2*ssimRadius, w-2*ssimRadius
	// Row-filtered moments x, y, x², y², xy for every row and valid column, then the column pass.
	rows := make([][5]float64, h*wo)
	var total float64
	for c := range channels {
		x, y := a[c*h*w:(c+1)*h*w], b[c*h*w:(c+1)*h*w]
		for r := range h {
			for j := range wo {
				var m [5]float64
				for k, g := range kern {
					p, q := float64(x[r*w+j+k]), float64(y[r*w+j+k])
					m[0] += g * p
					m[1] += g * q
					m[2] += g * p * p
					m[3] += g * q * q
					m[4] += g * p * q
				}
				rows[r*wo+j] = m
			}
		}
		var sum float64
		for i := range ho {
			for j := range wo {
				var m [5]float64
				for k, g := range kern {
					v := &rows[(i+k)*wo+j]
					for t := range m {
						m[t] += g * v[t]
					}
				}
				ux, uy := m[0], m[1]
				vx, vy, vxy := m[2]-ux*ux, m[3]-uy*uy, m[4]-ux*uy
				sum += (2*ux*uy + c1) * (2*vxy + c2) / ((ux*ux + uy*uy + c1) * (vx + vy + c2))
			}
		}
		total += sum / float64(ho*wo)
	}
	return total / float64(channels), nil
}

// ClassAccuracy is the share of rows of logits [len(labels), classes] whose argmax (the first
// on ties, as torch.argmax) is the row's label. Shapes that do not match, no rows or no classes
// give NaN; a row holding NaN counts as wrong.
func ClassAccuracy(logits []float32, classes int, labels []int64) float64 {
	if classes <= 0 || len(labels) == 0 || int64(len(logits)) != int64(classes)*int64(len(labels)) {
		return math.NaN()
	}
	right := 0
	for i, l := range labels {
		row := logits[i*classes : (i+1)*classes]
		best, ok := 0, true
		for k, v := range row {
			if v != v {
				ok = false
				break
			}
			if v > row[best] {
				best = k
			}
		}
		if ok && int64(best) == l {
			right++
		}
	}
	return float64(right) / float64(len(labels))
}
