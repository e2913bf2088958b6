package fmnist

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// Preprocess turns n uint8 images of h×w pixels into the model's input [n, 1, 32, 32] float32:
// 28×28 images are padded by 2 px of background (0) on every side, 32×32 ones taken as they are,
// and every value v becomes v/127.5 − 1 in float32, as tools/fmnist_common.py's to_model_space.
//
// The channel count comes from len(pix): n·h·w is gray, n·h·w·3 is RGB laid out NHWC (what
// datasets.ReadImages returns, gray PNGs expanded). RGB pixels are reduced to PIL's
// convert("L") luminance, (19595·R + 38470·G + 7471·B + 2¹⁵) >> 16, which returns the common
// value exactly when R = G = B, so gray images stored as RGB come back unchanged.
func Preprocess(pix []uint8, n, h, w int) ([]float32, error) {
	if n <= 0 || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("fmnist: %d images of %d×%d pixels, want a positive count and size", n, h, w)
	}
	if h != w || (h != 28 && h != InputSize) {
		return nil, fmt.Errorf("fmnist: images are %d×%d pixels, want 28×28 (Fashion-MNIST, padded by 2) or 32×32 (the model's size)", h, w)
	}
	px := int64(n) * int64(h) * int64(w)
	var channels int
	switch int64(len(pix)) {
	case px:
		channels = 1
	case 3 * px:
		channels = 3
	default:
		return nil, fmt.Errorf("fmnist: %d bytes of pixels, want %d images × %d × %d × 1 (gray) or × 3 (RGB, NHWC)", len(pix), n, h, w)
	}
	var scale [256]float32
	for i := range scale {
		scale[i] = float32(i)/127.5 - 1
	}
	const per = InputSize * InputSize
	pad := (InputSize - h) / 2
	out := make([]float32, n*per)
	for i := range out {
		out[i] = -1 // the 0-valued padding, scaled
	}
	for i := range n {
		img := pix[i*h*w*channels : (i+1)*h*w*channels]
		dst := out[i*per : (i+1)*per]
		for y := range h {
			for x := range w {
				var v uint8
				if channels == 1 {
					v = img[y*w+x]
				} else {
					p := img[(y*w+x)*3:]
					v = uint8((19595*uint32(p[0]) + 38470*uint32(p[1]) + 7471*uint32(p[2]) + 1<<15) >> 16)
				}
				dst[(y+pad)*InputSize+x+pad] = scale[v]
			}
		}
	}
	return out, nil
}

// FromImages classifies count uint8 images of h×w pixels (gray or RGB NHWC, 28×28 or 32×32; see
// Preprocess).
func (n *Net) FromImages(pix []uint8, count, h, w int) (*Output, error) {
	x, err := Preprocess(pix, count, h, w)
	if err != nil {
		return nil, err
	}
	return n.Run(x, count)
}

// Extractor adapts the classifier to metrics.Extractor: its penultimate features play pool3's
// part (FID-FMNIST) and its logits the Inception logits' (IS-FMNIST, class accuracy).
type Extractor struct {
	Net *Net
	id  string
}

// NewExtractor loads the classifier and names it by its weights file's content, so that metrics
// computed with other weights are never mixed up with these.
func NewExtractor(b backends.Backend, path string) (*Extractor, error) {
	net, err := Load(b, path)
	if err != nil {
		return nil, err
	}
	hash, err := checkpoint.FileHash(path)
	if err != nil {
		return nil, err
	}
	return &Extractor{Net: net, id: IDPrefix + hash[:16]}, nil
}

// IDPrefix starts every Extractor ID; the rest is the first 16 hex digits of the weights' SHA-256.
const IDPrefix = "fmnist-cnn@"

// ID names the network and its weights, "fmnist-cnn@<sha256 prefix>".
func (e *Extractor) ID() string { return e.id }

// Extract computes the features and logits of n uint8 images (see Preprocess for the layouts
// and sizes accepted); there are no spatial features.
func (e *Extractor) Extract(pix []uint8, n, h, w int, progress func(done, total int)) (*metrics.Features, error) {
	x, err := Preprocess(pix, n, h, w)
	if err != nil {
		return nil, err
	}
	out, err := e.Net.run(x, n, progress)
	if err != nil {
		return nil, err
	}
	return &metrics.Features{N: out.N, Pool: out.Features, PoolDim: FeatureDim, Logits: out.Logits, LogitDim: NumClasses}, nil
}

// Extractor must satisfy the interface the harness computes metrics through.
var _ metrics.Extractor = (*Extractor)(nil)
