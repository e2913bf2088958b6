package unet_test

import (
	"context"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/unet"
)

// The UNet's methods sample end to end under PLMS with CFG: settings that reuse and prune
// nothing (DeepCache N=1, ToMeSD ratio 0, DaTo uniform N=1 ratio 0) give the uncached samples
// bit for bit; real settings run fewer FLOPs and change the samples.
func TestUNetMethodsSample(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	g := golden.Open(t, "sd-unet/plms.safetensors")
	d, err := unet.NewDenoiser(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	cond, uncond := golden.F32(t, g, "cond"), golden.F32(t, g, "uncond")
	if err := d.SetContexts(cond, uncond[:len(uncond)/2]); err != nil {
		t.Fatal(err)
	}
	const steps = 4
	sample := func(method string, raw map[string]string) ([]float32, int64) {
		t.Helper()
		p, err := diffusion.NewPLMS(steps)
		if err != nil {
			t.Fatal(err)
		}
		pol, _, err := methods.New(method, raw, methods.Env{Layout: d.Layout(), Steps: steps, Rows: 4, Seed: 1, Samples: []int{0, 1}})
		if err != nil {
			t.Fatal(err)
		}
		var flops int64
		req := harness.Request{Sampler: diffusion.PLMS, PLMS: p, CFGScale: 7.5, GuideChannels: diffusion.GuidanceAll,
			XInit: golden.F32(t, g, "x_T"), Labels: []int64{0, 1}, Policy: pol, Cache: hook.NewCache(d.Layout()),
			OnStep: func(s harness.StepInfo) error {
				for _, f := range d.BlockFLOPs(s.Plan, s.Rows) {
					flops += f
				}
				return nil
			}}
		res, err := harness.Sample(context.Background(), d, req)
		if err != nil {
			t.Fatalf("%s %v: %v", method, raw, err)
		}
		return res.Sample, flops
	}
	ref, full := sample("none", nil)
	for _, c := range []struct {
		method string
		raw    map[string]string
	}{
		{"deepcache", map[string]string{"N": "1"}},
		{"tomesd", map[string]string{"ratio": "0"}},
		{"dato", map[string]string{"strategy": "uniform", "N": "1", "ratio": "0"}},
	} {
		got, flops := sample(c.method, c.raw)
		if !slices.Equal(got, ref) || flops != full {
			t.Errorf("%s %v: samples differ from none (rel %.3g) or FLOPs %d ≠ %d", c.method, c.raw, golden.RelToMax(got, ref), flops, full)
		}
	}
	for _, c := range []struct {
		method string
		raw    map[string]string
	}{
		{"deepcache", map[string]string{"N": "3"}},
		{"tomesd", map[string]string{"ratio": "0.5"}},
		{"dato", map[string]string{"strategy": "uniform", "N": "2"}},
		{"dato", nil},
	} {
		got, flops := sample(c.method, c.raw)
		e := golden.RelToMax(got, ref)
		if e == 0 || flops >= full {
			t.Errorf("%s %v: rel change %.3g, FLOPs %d of %d: want a changed sample for fewer FLOPs", c.method, c.raw, e, flops, full)
		}
		t.Logf("%s %v: %.2f× fewer FLOPs, rel change %.3g", c.method, c.raw, float64(full)/float64(flops), e)
	}
}
