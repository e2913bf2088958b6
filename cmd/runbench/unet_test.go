package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
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

	// A method made for transformer stacks, and another sampler, are refused with the reason.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--method", "fora"}, "does not apply to this model, a UNet"},
		{[]string{"--sampler", "ddim"}, "replays PLMS"},
	} {
		args := append([]string{"sample", "--model", "unet", "--weights", w, "--heads", "4", "--sampler", "plms", "--steps", "10",
			"--cfg", "7.5", "--replay", golden.Path("sd-unet/plms.safetensors"), "--out", filepath.Join(dir, "x.safetensors")}, c.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
}

// TestUNetDaToReplay replays DaTo's golden trace (testdata/dato: the official patch on the tiny SD
// UNet, PLMS 10 steps, CFG 7.5, the released strategy's first 10 entries) with the recorded
// noise and coin flips: the trace (per call full, every block run or cached, pruned blocks; per
// prune event call, t, count, draw, γ, dynamics) is identical, and every call's raw ε, every
// state and the final latent are within the README's 1e-4.
func TestUNetDaToReplay(t *testing.T) {
	const tol = 1e-4
	dir := t.TempDir()
	out, trace := filepath.Join(dir, "dato.safetensors"), filepath.Join(dir, "trace.json")
	mustRun(t, "sample", "--model", "unet", "--weights", golden.Path("sd-unet/weights.safetensors"), "--heads", "4",
		"--sampler", "plms", "--steps", "10", "--cfg", "7.5", "--replay", golden.Path("dato/trace.safetensors"),
		"--out", out, "--method", "dato", "--trace", trace)
	type call struct {
		Call   int               `json:"call"`
		T      int64             `json:"t"`
		Full   bool              `json:"full"`
		Blocks map[string]string `json:"blocks"`
		Pruned int               `json:"pruned_blocks"`
	}
	type prune struct {
		Call        int     `json:"call"`
		T           int64   `json:"t"`
		NumPrune    int     `json:"num_prune"`
		SignDraw    float64 `json:"sign_draw"`
		GammaUsed   float64 `json:"gamma_used"`
		HasDynamics bool    `json:"has_dynamics"`
	}
	type actions struct {
		Calls []call  `json:"calls"`
		Prune []prune `json:"prune"`
	}
	read := func(path string) actions {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var a actions
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	got, want := read(trace), read(golden.Path("dato/actions.json"))
	if len(got.Calls) != 11 || len(got.Prune) != 14 {
		t.Errorf("trace of %d calls and %d prune events, want 11 and 14", len(got.Calls), len(got.Prune))
	}
	if !reflect.DeepEqual(got.Calls, want.Calls) {
		t.Errorf("calls differ:\n got %+v\nwant %+v", got.Calls, want.Calls)
	}
	if !reflect.DeepEqual(got.Prune, want.Prune) {
		t.Errorf("prune events differ:\n got %+v\nwant %+v", got.Prune, want.Prune)
	}
	g, w := golden.Open(t, out), golden.Open(t, "dato/trace.safetensors")
	worst := 0.0
	check := func(name string) {
		t.Helper()
		e := golden.RelToMax(golden.F32(t, g, name), golden.F32(t, w, name))
		if e > tol {
			t.Errorf("%s: relative error %.3g > %g", name, e, tol)
		}
		worst = max(worst, e)
	}
	for k := range 11 {
		check(fmt.Sprintf("call_%d_eps_raw", k))
	}
	for i := range 10 {
		check(fmt.Sprintf("x_%d", i))
		check(fmt.Sprintf("pred_x0_%d", i))
	}
	check("final")
	t.Logf("max relative error %.3g", worst)
}
