package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// The FLOPs of the methods added after ToCa/FORA, from the command users run: DuCa's README
// setting (docs/methods.md: 9.58 TFLOPs, 2.48×), TaylorSeer N=3 (the FORA step set, 2.77×) and Δ-DiT.
func TestFlopsDuCaTaylorSeerDeltaDiT(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		tflops  float64
		speedup float64
	}{
		{"duca", []string{"--method", "duca", "--param", "N=3", "--param", "ratio=0.05"}, 9.58, 2.48},
		{"taylorseer", []string{"--method", "taylorseer", "--param", "N=3"}, 8.56, 2.77},
		// Δ-DiT N=2 caching 14 of 28 blocks: 24 of 50 calls run half the stack.
		{"deltadit", []string{"--method", "deltadit", "--param", "N=2", "--param", "blocks=14", "--param", "boundary=25"}, 0, 50.0 / (26 + 24*0.5)},
	} {
		out := mustRun(t, append([]string{"flops", "--preset", "DiT-XL/2", "--image-size", "256", "--sampler", "ddim", "--steps", "50", "--json"}, c.args...)...)
		var rep flopsReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		if c.tflops != 0 && math.Abs(rep.TotalTFLOPs-c.tflops) > 0.005 {
			t.Errorf("%s: %.4f TFLOPs, want %.2f", c.name, rep.TotalTFLOPs, c.tflops)
		}
		if math.Abs(rep.Speedup-c.speedup) > 0.005 {
			t.Errorf("%s: speedup %.4f, want %.2f", c.name, rep.Speedup, c.speedup)
		}
		if len(rep.PerStepFLOPs) != 50 || len(rep.Schedule) != 50 {
			t.Errorf("%s: %d per-step FLOPs, %d schedule entries, want 50", c.name, len(rep.PerStepFLOPs), len(rep.Schedule))
		}
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--method", "duca", "--param", "ratio=2"}, "ratio"},
		{[]string{"--method", "duca", "--param", "score=kv-norm"}, "score"},
		{[]string{"--method", "taylorseer", "--param", "order=-1"}, "order"},
		{[]string{"--method", "deltadit", "--param", "blocks=29"}, "depth 28"},
		{[]string{"--method", "deltadit", "--param", "boundary=50"}, "boundary 50"},
	} {
		_, err := run(t, append([]string{"flops", "--preset", "DiT-XL/2"}, bad.args...)...)
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("runbench flops %v: error %v, want one line about %q", bad.args, err, bad.want)
		}
	}
}
