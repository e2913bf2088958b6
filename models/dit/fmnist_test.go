package dit_test

import (
	"context"
	"flag"
	"fmt"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

var updateFMNIST = flag.Bool("update-fmnist", false, "rewrite testdata/fmnist/dit_samples.safetensors from the current code")

// The shipped Fashion-MNIST DiT, loaded through the public loader, still produces the stored
// samples (DDIM-10, CFG 2 on ε, labels 0 and 7, noise from (seed 1, index)): any change to the
// model or sampler code that moves a sample shows here. Regenerate with -update-fmnist only
// after an intended change, and say why in the commit.
func TestShippedFMNISTSamples(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.Load(b, golden.Path("../assets/fmnist_dit.safetensors"), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Config.String(); got != "DiT depth 5, hidden 48, 3 heads, patch 4, input 1x32x32, 10 classes, learned sigma" {
		t.Fatalf("shipped model is %s", got)
	}
	sched, _ := diffusion.NewSchedule(1000, "10")
	per := 32 * 32
	x0 := make([]float32, 2*per)
	for i := range 2 {
		diffusion.NewNoise(1, i).Fill(x0[i*per : (i+1)*per])
	}
	res, err := harness.Sample(context.Background(), m, harness.Request{Sampler: diffusion.DDIM, Schedule: sched, CFGScale: 2,
		GuideChannels: diffusion.GuidanceAll, XInit: x0, Labels: []int64{0, 7}})
	if err != nil {
		t.Fatal(err)
	}
	path := golden.Path("fmnist/dit_samples.safetensors")
	if *updateFMNIST {
		if err := checkpoint.WriteSafetensors(path, map[string]*checkpoint.Tensor{"sample": checkpoint.NewF32(res.Sample, 2, 1, 32, 32)},
			map[string]string{"how": "DDIM-10, cfg 2 (all eps channels), labels [0 7], noise diffusion.NewNoise(1, i)"}); err != nil {
			t.Fatal(err)
		}
	}
	want := golden.F32(t, golden.Open(t, "fmnist/dit_samples.safetensors"), "sample")
	if e := golden.RelToMax(res.Sample, want); e > 1e-5 {
		t.Errorf("samples moved by %.3g of their scale (> 1e-5): the model or sampler code changed", e)
	} else {
		t.Log(fmt.Sprintf("samples within %.3g of the stored ones", e))
	}
}
