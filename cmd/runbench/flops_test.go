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
