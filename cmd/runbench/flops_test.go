package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

// The DiT-XL/2 FLOPs of the official counters (testdata/caching/flops_xl.json) per step, and the
// headline totals of the issue, from the exact command shape users run.
func TestFlopsXL(t *testing.T) {
	data, err := os.ReadFile(golden.Path("caching/flops_xl.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key     string
		args    []string
		tflops  float64
		speedup float64
	}{
		{"ddim50/baseline", []string{"--method", "none"}, 23.74, 1},
		{"ddim50/toca_N3_r0.07", []string{"--method", "toca", "--param", "N=3", "--param", "ratio=0.07", "--param", "scheduler=ToCa-ddim50"}, 10.23, 2.32},
		{"ddim50/fora_N3", []string{"--method", "fora", "--param", "N=3"}, 0, 2.77},
	} {
		out := mustRun(t, append([]string{"flops", "--preset", "DiT-XL/2", "--image-size", "256", "--sampler", "ddim", "--steps", "50", "--json"}, c.args...)...)
		var rep flopsReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: %v\n%s", c.key, err, out)
		}
		var want struct {
			Total   int64   `json:"total_flops"`
			PerStep []int64 `json:"per_step_flops"`
		}
		if err := json.Unmarshal(ref[c.key], &want); err != nil {
			t.Fatal(err)
		}
		if rep.TotalFLOPs != want.Total || !slices.Equal(rep.PerStepFLOPs, want.PerStep) {
			t.Errorf("%s: total %d, want %d (per step equal: %t)", c.key, rep.TotalFLOPs, want.Total, slices.Equal(rep.PerStepFLOPs, want.PerStep))
		}
		if c.tflops != 0 && math.Abs(rep.TotalTFLOPs-c.tflops) > 0.005 {
			t.Errorf("%s: %.4f TFLOPs, want %.2f", c.key, rep.TotalTFLOPs, c.tflops)
		}
		if math.Abs(rep.Speedup-c.speedup) > 0.005 {
			t.Errorf("%s: speedup %.4f, want %.2f", c.key, rep.Speedup, c.speedup)
		}
	}
	// DDPM-250 works through the same path.
	mustRun(t, "flops", "--preset", "DiT-XL/2", "--sampler", "ddpm", "--steps", "250", "--method", "toca", "--param", "N=4", "--param", "scheduler=ToCa-ddpm250", "--json")
	for _, bad := range [][]string{
		{"flops", "--preset", "DiT-XL/2", "--method", "tocca"},
		{"flops", "--preset", "DiT-XL/2", "--method", "toca", "--param", "ratio=1.5"},
		{"flops", "--preset", "DiT-XL/2", "--method", "toca", "--param", "speed=3"},
		{"flops", "--preset", "DiT-XL/2", "--method", "fora", "--param", "N"},
	} {
		if _, err := run(t, bad...); err == nil {
			t.Errorf("runbench %v: want an error", bad)
		}
	}
}

// SD v1's FLOPs need no weights (--preset SD-v1): every one of PLMS-50's 51 calls is counted,
// call 1 of DaTo's released strategy (S = 0) runs only the time embedding and the output head, and
// its full call 0 costs a little less than none's (the pruned self-attentions).
func TestFlopsSDv1WithoutWeights(t *testing.T) {
	get := func(method string) (total float64, perCall []int64) {
		out := mustRun(t, "flops", "--model", "unet", "--preset", "SD-v1", "--latent", "64", "--sampler", "plms",
			"--steps", "50", "--cfg", "7.5", "--method", method, "--json")
		var r struct {
			Total   float64 `json:"total_tflops"`
			PerStep []int64 `json:"per_step_flops"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v\n%s", method, err, out)
		}
		return r.Total, r.PerStep
	}
	none, full := get("none")
	dato, calls := get("dato")
	if len(full) != 51 || len(calls) != 51 {
		t.Fatalf("%d and %d calls counted, want 51", len(full), len(calls))
	}
	if !(calls[0] < full[0] && calls[0] > full[0]*9/10) || calls[1] >= full[0]/1000 || !(dato < none/3) {
		t.Errorf("dato: call 0 %d (none %d), call 1 %d, total %.2f T of %.2f T", calls[0], full[0], calls[1], dato, none)
	}
}
