package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

// TestUNetPLMSReplay runs runbench sample --replay on testdata/sd-unet's PLMS chain (10 steps,
// 11 calls, CFG 7.5), the UNet read off the weights' keys, and compares every call's guided ε,
// every state and x₀ prediction and the final latent with the golden (README: 1e-4).
func TestUNetPLMSReplay(t *testing.T) {
	const tol = 1e-4
	dir := t.TempDir()
	w := golden.Path("sd-unet/weights.safetensors")
	out := filepath.Join(dir, "plms.safetensors")
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "plms", "--steps", "10", "--cfg", "7.5",
		"--replay", golden.Path("sd-unet/plms.safetensors"), "--out", out)
	got, want := golden.Open(t, out), golden.Open(t, "sd-unet/plms.safetensors")
	worst := map[string]float64{}
	check := func(kind, name string) {
		t.Helper()
		e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, name))
		if e > tol {
			t.Errorf("%s: relative error %.3g > %g", name, e, tol)
		}
		worst[kind] = max(worst[kind], e)
	}
	for k := range 11 {
		check("eps_cfg", fmt.Sprintf("call_%d_eps_cfg", k))
		if g, w := golden.I64(t, got, fmt.Sprintf("call_%d_t", k)), golden.I64(t, want, fmt.Sprintf("call_%d_t", k)); g[0] != w[0] {
			t.Errorf("call %d at t=%d, want %d", k, g[0], w[0])
		}
	}
	for i := range 10 {
		check("x", fmt.Sprintf("x_%d", i))
		check("pred_x0", fmt.Sprintf("pred_x0_%d", i))
	}
	check("final", "final")
	t.Logf("max relative errors: %v", worst)

	// Anything but method none, and another sampler, is refused with the reason.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--method", "fora"}, "method none only"},
		{[]string{"--sampler", "ddim"}, "replays PLMS"},
	} {
		args := append([]string{"sample", "--model", "unet", "--weights", w, "--heads", "4", "--sampler", "plms", "--steps", "10",
			"--cfg", "7.5", "--replay", golden.Path("sd-unet/plms.safetensors"), "--out", filepath.Join(dir, "x.safetensors")}, c.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
}
