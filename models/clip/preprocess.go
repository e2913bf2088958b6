package clip

import (
	"fmt"
	"math"
	"strings"
)

// Mean is CLIP's per-channel (RGB) mean of [0,1] pixels, as clip.load and HF's CLIPImageProcessor use it.
var Mean = [3]float32{0.48145466, 0.4578275, 0.40821073}

// Std is CLIP's per-channel (RGB) standard deviation of [0,1] pixels.
var Std = [3]float32{0.26862954, 0.26130258, 0.27577711}

// ValueRange says how pixel values reach CLIP's normalisation. Papers differ here, and the
// difference moves CLIP scores by many points, so it is recorded with every score.
type ValueRange int

const (
	// RangeUint8 divides uint8 pixels by 255: OpenAI's preprocess, and torchmetrics fed uint8 images.
	RangeUint8 ValueRange = iota
	// RangeUnitRescaled divides by 255 twice, emulating [0,1] float images handed to torchmetrics,
	// whose HF processor rescales by 1/255 again (ToCa's clip_score.py; nearly black inputs).
	RangeUnitRescaled
)

// String is the name used in flags and run records.
func (v ValueRange) String() string {
	switch v {
	case RangeUint8:
		return "uint8"
	case RangeUnitRescaled:
		return "unit-rescaled"
	}
	return fmt.Sprintf("ValueRange(%d)", int(v))
}

// Describe is the one-line explanation stored next to a score.
func (v ValueRange) Describe() string {
	switch v {
	case RangeUint8:
		return "uint8 pixels / 255 in [0,1], then CLIP mean/std"
	case RangeUnitRescaled:
		return "[0,1] images rescaled by 1/255 again (pixels / 255²), then CLIP mean/std"
	}
	return v.String()
}

// ParseValueRange reads a ValueRange name ("uint8" or "unit-rescaled").
func ParseValueRange(s string) (ValueRange, error) {
	for _, v := range []ValueRange{RangeUint8, RangeUnitRescaled} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("image value range %q: want %q or %q", s, RangeUint8, RangeUnitRescaled)
}

// Preprocess is clip.load's transform on n RGB images (NHWC uint8, h×w): resize the shorter side
// to res with PIL's bicubic filter (long side int(res·long/short)), center crop res×res (offset
// int(round((size−res)/2)), Python rounding), scale to [0,1] by vr, and normalise with Mean and
// Std. It returns NCHW float32 [n, 3, res, res]. HF's CLIPImageProcessor differs only in
// cropping at floor((size−res)/2).
func Preprocess(pix []uint8, n, h, w, res int, vr ValueRange) ([]float32, error) {
	if n <= 0 || h <= 0 || w <= 0 || res <= 0 || len(pix) != n*h*w*3 {
		return nil, fmt.Errorf("clip preprocess: %d bytes for %d images of %d×%d RGB (want %d, positive sizes, resolution %d)", len(pix), n, h, w, n*h*w*3, res)
	}
	var div float32
	switch vr {
	case RangeUint8:
		div = 1
	case RangeUnitRescaled:
		div = 255
	default:
		return nil, fmt.Errorf("clip preprocess: unknown image value range %d", int(vr))
	}
	nh, nw := res, res
	if h <= w {
		nw = int(float64(res) * float64(w) / float64(h))
	} else {
		nh = int(float64(res) * float64(h) / float64(w))
	}
	top, left := pyRoundHalf(nh-res), pyRoundHalf(nw-res)
	out := make([]float32, n*3*res*res)
	for i := range n {
		img := pix[i*h*w*3 : (i+1)*h*w*3]
		resized := resizeBicubic(img, h, w, nh, nw)
		for c := range 3 {
			dst := out[(i*3+c)*res*res:]
			for y := range res {
				for x := range res {
					v := float32(resized[((top+y)*nw+left+x)*3+c]) / 255 / div
					dst[y*res+x] = (v - Mean[c]) / Std[c]
				}
			}
		}
	}
	return out, nil
}

// pyRoundHalf is int(round(d / 2.0)) with Python's round-half-to-even.
func pyRoundHalf(d int) int { return int(math.RoundToEven(float64(d) / 2)) }

// PIL's fixed-point resampling constants (Imaging/Resample.c).
const (
	precisionBits = 32 - 8 - 2
	bicubicA      = -0.5
	bicubicSupp   = 2.0
)

// resizeBicubic is PIL's Image.resize(…, BICUBIC) on an RGB uint8 image: separable, horizontal
// pass first, filter support scaled by the downscale factor, coefficients normalised then
// rounded to 22-bit fixed point, results clipped to uint8 after each pass.
func resizeBicubic(src []uint8, h, w, nh, nw int) []uint8 {
	if h == nh && w == nw {
		return src
	}
	img, iw := src, w
	yFirst, yLast := 0, h
	boundsV, kkV, kszV := resampleCoeffs(h, nh)
	if nw != w {
		// Only the source rows the vertical pass reads are resampled horizontally.
		yFirst = boundsV[0]
		yLast = boundsV[2*(nh-1)] + boundsV[2*(nh-1)+1]
		for i := range nh {
			boundsV[2*i] -= yFirst
		}
		boundsH, kkH, kszH := resampleCoeffs(w, nw)
		rows := yLast - yFirst
		tmp := make([]uint8, rows*nw*3)
		for y := range rows {
			line := src[(y+yFirst)*w*3:]
			for x := range nw {
				xmin, xmax := boundsH[2*x], boundsH[2*x+1]
				k := kkH[x*kszH:]
				for c := range 3 {
					ss := int32(1 << (precisionBits - 1))
					for j := range xmax {
						ss += int32(line[(j+xmin)*3+c]) * k[j]
					}
					tmp[(y*nw+x)*3+c] = clip8(ss)
				}
			}
		}
		img, iw = tmp, nw
	}
	if nh == h {
		return img
	}
	out := make([]uint8, nh*iw*3)
	for y := range nh {
		ymin, ymax := boundsV[2*y], boundsV[2*y+1]
		k := kkV[y*kszV:]
		for x := range iw {
			for c := range 3 {
				ss := int32(1 << (precisionBits - 1))
				for j := range ymax {
					ss += int32(img[((j+ymin)*iw+x)*3+c]) * k[j]
				}
				out[(y*iw+x)*3+c] = clip8(ss)
			}
		}
	}
	return out
}

// resampleCoeffs is PIL's precompute_coeffs + normalize_coeffs_8bpc for one axis: per output
// pixel the first source index and count, and ksize fixed-point weights.
func resampleCoeffs(inSize, outSize int) (bounds []int, kk []int32, ksize int) {
	scale := float64(inSize) / float64(outSize)
	filterScale := max(scale, 1)
	support := bicubicSupp * filterScale
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	k := make([]float64, ksize)
	for xx := range outSize {
		center := float64((float64(xx) + 0.5) * scale)
		ss := 1 / filterScale
		xmin := max(int(center-support+0.5), 0) // C truncation toward zero, as PIL
		xmax := min(int(center+support+0.5), inSize) - xmin
		ww := 0.0
		for x := range xmax {
			k[x] = bicubic(float64((float64(x+xmin) - center + 0.5) * ss))
			ww += k[x]
		}
		for x := range xmax {
			v := k[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				kk[xx*ksize+x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				kk[xx*ksize+x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		bounds[2*xx], bounds[2*xx+1] = xmin, xmax
	}
	return bounds, kk, ksize
}

// bicubic is PIL's cubic convolution kernel with a = −0.5.
func bicubic(x float64) float64 {
	// The float64() conversions forbid fused multiply-adds, which PIL's x86-64 build does not use.
	x = math.Abs(x)
	switch {
	case x < 1:
		t := float64((bicubicA+2)*x) - (bicubicA + 3)
		return float64(float64(t*x)*x) + 1
	case x < 2:
		t := float64(float64((x-5)*x) + 8)
		return float64(float64(t*x)-4) * bicubicA
	}
	return 0
}

func clip8(v int32) uint8 {
	switch {
	case v >= 1<<precisionBits<<8:
		return 255
	case v <= 0:
		return 0
	}
	return uint8(v >> precisionBits)
}
