package runner

import (
	"fmt"
	"image"
	"math"
	"strings"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
)

// MetricName is the stored name of a metric computed with an extractor: FID and IS of the
// Fashion-MNIST classifier are stored as fid_fmnist and is_fmnist so that nobody mistakes them
// for Inception's.
func MetricName(name, extractor string) string {
	if strings.HasPrefix(extractor, "fmnist") && (name == "fid" || name == "is") {
		return name + "_fmnist"
	}
	return name
}

// classAccuracy is the share of samples whose classifier logits pick the label they were
// generated for.
func classAccuracy(gen *metrics.Features, samples []store.Sample) (*float64, error) {
	if gen.Logits == nil || gen.LogitDim == 0 {
		return nil, fmt.Errorf("class accuracy needs classifier logits; the extractor stores none")
	}
	labels := make([]int64, len(samples))
	for i, s := range samples {
		if s.Label == nil {
			return nil, fmt.Errorf("class accuracy needs labels; sample %d has none", s.Index)
		}
		labels[i] = int64(*s.Label)
	}
	v := metrics.ClassAccuracy(gen.Logits, gen.LogitDim, labels)
	return &v, nil
}

// MaxPSNR caps the PSNR of identical pairs (+Inf) so that averages stay finite.
const MaxPSNR = 100.0

// PairedFidelity compares every sample of a run with the sample of the same index of the base
// (uncached) run, which started from the same noise: mean PSNR (capped at MaxPSNR) and mean SSIM
// over the 8-bit images written by the runner.
func PairedFidelity(db *store.DB, run, base store.Run) (psnr, ssim float64, n int, err error) {
	a, err := db.Samples(run.ID)
	if err != nil {
		return 0, 0, 0, err
	}
	b, err := db.Samples(base.ID)
	if err != nil {
		return 0, 0, 0, err
	}
	byIndex := map[int]store.Sample{}
	for _, s := range b {
		byIndex[s.Index] = s
	}
	for _, s := range a {
		t, ok := byIndex[s.Index]
		if !ok {
			continue
		}
		x, h, w, c, err := readPNG(s.OutputPath, s.OutputHash)
		if err != nil {
			return 0, 0, 0, err
		}
		y, h2, w2, c2, err := readPNG(t.OutputPath, t.OutputHash)
		if err != nil {
			return 0, 0, 0, err
		}
		if h != h2 || w != w2 || c != c2 {
			return 0, 0, 0, fmt.Errorf("%s is %dx%dx%d, %s %dx%dx%d", s.OutputPath, h, w, c, t.OutputPath, h2, w2, c2)
		}
		psnr += math.Min(metrics.PSNR(x, y, 255), MaxPSNR)
		v, err := metrics.SSIM(x, y, h, w, c, 255)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %w", s.OutputPath, err)
		}
		ssim += v
		n++
	}
	if n == 0 {
		return 0, 0, 0, fmt.Errorf("runs %d and %d share no sample indices with stored images", run.ID, base.ID)
	}
	return psnr / float64(n), ssim / float64(n), n, nil
}

// readPNG reads a sample image written by WriteSample, after checking it is the file the run
// recorded, as float32 channel planes [c, h, w] of 0..255 values.
func readPNG(path, hash string) ([]float32, int, int, int, error) {
	if path == "" {
		return nil, 0, 0, 0, fmt.Errorf("paired fidelity needs the sample images (outputs = \"keep\")")
	}
	img, err := datasets.DecodeImage(path, hash)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	bd := img.Bounds()
	h, w := bd.Dy(), bd.Dx()
	if g, ok := img.(*image.Gray); ok {
		out := make([]float32, h*w)
		for y := range h {
			for x := range w {
				out[y*w+x] = float32(g.GrayAt(bd.Min.X+x, bd.Min.Y+y).Y)
			}
		}
		return out, h, w, 1, nil
	}
	out := make([]float32, 3*h*w)
	for y := range h {
		for x := range w {
			r, g, b, _ := img.At(bd.Min.X+x, bd.Min.Y+y).RGBA()
			out[y*w+x], out[h*w+y*w+x], out[2*h*w+y*w+x] = float32(r>>8), float32(g>>8), float32(b>>8)
		}
	}
	return out, h, w, 3, nil
}
