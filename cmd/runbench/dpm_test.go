package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/internal/golden"
)

// --sampler dpmpp replays with DPM-Solver++ and writes the model's fractional timesteps; a
// respacing spec is refused.
func TestSamplerDPMSolverCLI(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "dpm.safetensors")
	w := golden.Path("dit/weights.safetensors")
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "dpmpp", "--steps", "5", "--cfg", "1.5",
		"--replay", golden.Path("dit/sampling_ddim.safetensors"), "--out", out)
	got := golden.Open(t, out)
	solver, _ := diffusion.NewDPMSolver(5, 2)
	mt := golden.F32(t, got, "model_t")
	ts := golden.I64(t, got, "timesteps")
	for k := range 5 {
		if mt[k] != solver.ModelTime(k) || ts[k] != solver.TimestepMap()[4-k] {
			t.Errorf("call %d: model_t %g timestep %d, want %g, %d", k, mt[k], ts[k], solver.ModelTime(k), solver.TimestepMap()[4-k])
		}
	}
	if _, ok := got.Tensors["x_004"]; !ok {
		t.Error("no x_004: want 5 calls")
	}
	_, err := run(t, "sample", "--weights", w, "--heads", "4", "--sampler", "dpmpp", "--steps", "ddim5",
		"--replay", golden.Path("dit/sampling_ddim.safetensors"), "--out", out)
	if err == nil || !strings.Contains(err.Error(), "plain step count") {
		t.Errorf("--steps ddim5 with dpmpp: %v, want a plain-step-count error", err)
	}
}
