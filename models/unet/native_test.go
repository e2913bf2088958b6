package unet

import (
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
)

// TestNativeConvGolden runs the path other backends (XLA) take, the backend's own convolution
// with HWIO kernels (stride 2 and explicit padding in the Downsample), on the pure-Go backend
// against the golden ε, and times both paths.
func TestNativeConvGolden(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	if nativeConv(b) {
		t.Fatalf("the pure-Go backend %q should take the im2col path", b.Name())
	}
	g := golden.Open(t, "sd-unet/forward.safetensors")
	var ts []float64
	for _, v := range golden.I64(t, g, "t") {
		ts = append(ts, float64(v))
	}
	want := golden.F32(t, g, "eps")
	for _, native := range []bool{false, true} {
		m, err := newModel(b, golden.Open(t, "sd-unet/weights.safetensors"), 4, native)
		if err != nil {
			t.Fatal(err)
		}
		var eps []float32
		var best time.Duration
		for i := range 2 { // the first call compiles and uploads the weights
			t0 := time.Now()
			if eps, err = m.Forward(golden.F32(t, g, "x"), ts, golden.F32(t, g, "context"), Options{}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(t0); i > 0 && (best == 0 || d < best) {
				best = d
			}
		}
		e := golden.RelToMax(eps, want)
		t.Logf("native convolution %t: ε max|Δ|/max|golden| = %.3g, forward (batch 3, 16×16) %v", native, e, best)
		if e > 2e-5 {
			t.Errorf("native convolution %t: ε rel error %.3g > 2e-5", native, e)
		}
	}
}
