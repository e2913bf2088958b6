package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// fidelityPair builds the deterministic image pair of the numpy reference below: channel planes
// [C, H, W] of integers in 0..255, b = clip(a + a pseudo-noise in −8..8).
func fidelityPair(C, H, W int) (a, b []float32) {
	a, b = make([]float32, C*H*W), make([]float32, C*H*W)
	for c := range C {
		for i := range H {
			for j := range W {
				v := (i*7 + j*13 + c*5 + (i*j)%11) % 256
				k := (c*H+i)*W + j
				a[k] = float32(v)
				b[k] = float32(min(max(v+(i*j*3+c+j)%17-8, 0), 255))
			}
		}
	}
	return a, b
}

// TestSSIMReference compares with a literal numpy transcription of skimage's
// structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
// data_range=255, channel_axis=0): scipy's gaussian_filter (truncate 3.5, reflect padding) per
// moment, SSIM map cropped by 5 px, mean. (skimage itself was not installable offline.)
//
//	def gfilter(x):
//	    r = int(3.5*1.5+0.5); k = np.exp(-0.5*np.arange(-r, r+1)**2/1.5**2); k /= k.sum()
//	    p = np.pad(x, r, mode='symmetric')  # scipy's 'reflect'
//	    (separable correlation with k along W, then H, over p; output H×W)
//	S = (2*ux*uy+C1)*(2*vxy+C2)/((ux**2+uy**2+C1)*(vx+vy+C2)); S[5:-5, 5:-5].mean()
//
// The PSNR column is 10·log10(255² / mean((a−b)²)) of the same pairs.
func TestSSIMReference(t *testing.T) {
	for _, c := range []struct {
		C, H, W    int
		ssim, psnr float64
	}{
		{3, 16, 20, 0.9846461512931063, 33.979852326421906},
		{1, 11, 11, 0.9841809650181323, 34.19904141991937},
		{1, 32, 32, 0.9853511502688072, 33.95585962254834},
	} {
		a, b := fidelityPair(c.C, c.H, c.W)
		got, err := SSIM(a, b, c.H, c.W, c.C, 255)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-c.ssim) > 1e-12 {
			t.Errorf("SSIM %dx%dx%d = %.16g, reference %.16g", c.C, c.H, c.W, got, c.ssim)
		}
		if p := PSNR(a, b, 255); math.Abs(p-c.psnr) > 1e-10 {
			t.Errorf("PSNR %dx%dx%d = %.16g, reference %.16g", c.C, c.H, c.W, p, c.psnr)
		}
	}
}

func TestPSNR(t *testing.T) {
	a := make([]float32, 64)
	for i := range a {
		a[i] = float32(i % 9)
	}
	if p := PSNR(a, a, 255); !math.IsInf(p, 1) {
		t.Errorf("identical images: PSNR %v, want +Inf", p)
	}
	// A constant shift d gives MSE d², hence 20·log10(R/d) whatever the image.
	b := make([]float32, len(a))
	for i := range a {
		b[i] = a[i] + 3
	}
	if p, want := PSNR(a, b, 255), 20*math.Log10(255.0/3); math.Abs(p-want) > 1e-12 {
		t.Errorf("shift by 3: PSNR %v, want %v", p, want)
	}
	// Errors ±1 on half the pixels, 0 elsewhere: MSE 0.5, PSNR 10·log10(2) on a unit range.
	x, y := []float32{0, 0, 0.5, 0.5}, []float32{1, 0, -0.5, 0.5}
	if p, want := PSNR(x, y, 1), 10*math.Log10(2); math.Abs(p-want) > 1e-12 {
		t.Errorf("MSE 0.5: PSNR %v, want %v", p, want)
	}
	if p := PSNR(x, y, 1); p != PSNR(y, x, 1) {
		t.Errorf("PSNR is not symmetric")
	}
	for _, p := range []float64{PSNR(a, b[:10], 255), PSNR(nil, nil, 255), PSNR(a, b, 0), PSNR(a, b, math.NaN())} {
		if !math.IsNaN(p) {
			t.Errorf("invalid input: PSNR %v, want NaN", p)
		}
	}
}

func TestSSIM(t *testing.T) {
	const C, H, W = 3, 16, 24
	rng := rand.New(rand.NewPCG(1, 2))
	a := make([]float32, C*H*W)
	for i := range a {
		a[i] = float32(rng.IntN(256))
	}
	if s, err := SSIM(a, a, H, W, C, 255); err != nil || s != 1 {
		t.Errorf("identical images: SSIM %v (%v), want exactly 1", s, err)
	}
	noisy := make([]float32, len(a))
	for i := range a {
		noisy[i] = a[i] + float32(rng.NormFloat64()*20)
	}
	s1, err := SSIM(a, noisy, H, W, C, 255)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := SSIM(noisy, a, H, W, C, 255)
	if math.Abs(s1-s2) > 1e-14 {
		t.Errorf("SSIM not symmetric: %v vs %v", s1, s2)
	}
	if !(s1 < 0.99 && s1 > 0.5) {
		t.Errorf("noise σ = 20 on uniform 0..255 pixels: SSIM %v, want in (0.5, 0.99)", s1)
	}
	// Constant images p and q: variances vanish, so SSIM = (2pq + C1) / (p² + q² + C1) (up to
	// the rounding of the window weights' sum to 1).
	p, q := make([]float32, 11*11), make([]float32, 11*11)
	for i := range p {
		p[i], q[i] = 100, 110
	}
	c1 := (0.01 * 255) * (0.01 * 255)
	if s, _ := SSIM(p, q, 11, 11, 1, 255); math.Abs(s-(2*100*110+c1)/(100*100+110*110+c1)) > 1e-12 {
		t.Errorf("constant 100 vs 110: SSIM %.17g, want %.17g", s, (2*100*110+c1)/(100*100+110*110+c1))
	}
	// A constant shift keeps structure and contrast: only the luminance term moves below 1.
	shift := make([]float32, len(a))
	for i := range a {
		shift[i] = a[i] + 10
	}
	if s, _ := SSIM(a, shift, H, W, C, 255); !(s < 1 && s > 0.99) {
		t.Errorf("shift by 10: SSIM %v, want just below 1", s)
	}
	// Channels are averaged: a pair that differs in one channel only scores (1 + 1 + s)/3.
	mixed := append(append([]float32{}, a[:2*H*W]...), noisy[2*H*W:]...)
	one, _ := SSIM(a[2*H*W:], noisy[2*H*W:], H, W, 1, 255)
	if s, _ := SSIM(a, mixed, H, W, C, 255); math.Abs(s-(2+one)/3) > 1e-14 {
		t.Errorf("one channel changed: SSIM %v, want %v", s, (2+one)/3)
	}
}

func TestSSIMErrors(t *testing.T) {
	for _, c := range []struct {
		na, nb, h, w, ch int
		r                float64
		want             string
	}{
		{100, 100, 10, 10, 1, 255, "at least 11×11"},
		{121, 120, 11, 11, 1, 255, "want 121 each"},
		{121, 121, 11, 11, 0, 255, "≥ 1 channel"},
		{363, 363, 11, 11, 1, 255, "want 121 each"},
		{121, 121, 11, 11, 1, 0, "data range"},
		{121, 121, 11, 11, 1, math.Inf(1), "data range"},
	} {
		_, err := SSIM(make([]float32, c.na), make([]float32, c.nb), c.h, c.w, c.ch, c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SSIM(%d, %d values, %d×%d×%d, R=%v): error %v, want %q", c.na, c.nb, c.ch, c.h, c.w, c.r, err, c.want)
		}
	}
}

func TestClassAccuracy(t *testing.T) {
	nan := float32(math.NaN())
	logits := []float32{
		0, 5, 1, // → 1
		2, 2, 0, // tie → 0 (first, as torch.argmax)
		-1, -3, -0.5, // → 2
		nan, 9, 0, // NaN → wrong
	}
	if got := ClassAccuracy(logits, 3, []int64{1, 0, 0, 1}); got != 0.5 {
		t.Errorf("accuracy %v, want 0.5", got)
	}
	if got := ClassAccuracy(logits[:9], 3, []int64{1, 0, 2}); got != 1 {
		t.Errorf("accuracy %v, want 1", got)
	}
	for _, got := range []float64{ClassAccuracy(logits, 3, []int64{1}), ClassAccuracy(nil, 3, nil), ClassAccuracy(logits, 0, []int64{1})} {
		if !math.IsNaN(got) {
			t.Errorf("mismatched input: %v, want NaN", got)
		}
	}
}
