package vae

import (
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
)

// TestNativeConvGolden runs the path other backends (XLA) take, the backend's own convolution with
// HWIO kernels, on the pure-Go backend against the golden image.
func TestNativeConvGolden(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	if nativeConv(b) {
		t.Fatalf("the pure-Go backend %q should take the im2col path", b.Name())
	}
	d, err := newDecoder(b, golden.Open(t, "sd-vae/weights.safetensors"), true)
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "sd-vae/decode.safetensors")
	image, err := d.Decode(golden.F32(t, g, "latent"), 2)
	if err != nil {
		t.Fatal(err)
	}
	e := golden.RelToMax(image, golden.F32(t, g, "image"))
	t.Logf("image (backend convolution) max|Δ|/max|golden| = %.3g", e)
	if e > 1e-5 {
		t.Errorf("image: rel error %.3g > 1e-5", e)
	}
}
