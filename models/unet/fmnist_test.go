package unet_test

import (
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/unet"
)

// TestShippedFMNISTUNet checks the shipped Fashion-MNIST UNet (assets/fmnist_unet.safetensors,
// tools/train_unet.py: ldm UNetModel with SD v1 settings, the golden tiny config, on 4×16×16
// space-to-depth "latents") against its PyTorch forward (testdata/unet/fmnist_unet_golden.safetensors,
// written by train_unet.py --golden): x [2,4,16,16], t = [999, 37], context [2,12,32] (row 0
// "a photo of a Sneaker", row 1 the null context, zeros), eps [2,4,16,16].
func TestShippedFMNISTUNet(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.Load(b, golden.Path("../assets/fmnist_unet.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	const want = "UNet: model_channels 32, channel_mult [1 2], num_res_blocks 1, attention_resolutions [1 2], depth 1, context 32, 4 heads, in 4, out 4, time embedding 128"
	if got := m.Config.String(); got != want {
		t.Fatalf("inferred config %q, want %q", got, want)
	}
	if m.Layout != unet.LDM {
		t.Errorf("layout %v, want ldm", m.Layout)
	}
	g := golden.Open(t, "unet/fmnist_unet_golden.safetensors")
	var ts []float64
	for _, v := range golden.I64(t, g, "t") {
		ts = append(ts, float64(v))
	}
	t0 := time.Now()
	eps, err := m.Forward(golden.F32(t, g, "x"), ts, golden.F32(t, g, "context"), unet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := golden.RelToMax(eps, golden.F32(t, g, "eps"))
	t.Logf("forward (batch 2, first call, compiles) %v; eps max|Δ|/max|torch| %.3g", time.Since(t0), e)
	if e > 1e-4 {
		t.Errorf("eps: rel error %.3g > 1e-4", e)
	}
}
