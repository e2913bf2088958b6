package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/runner"
)

// `runbench calibrate` writes the calibration file and its database row, prints predicted and
// verified thresholds, and the file it wrote is one an experiment can name.
func TestCalibrateCLI(t *testing.T) {
	dir := t.TempDir()
	exp := filepath.Join(dir, "exp.toml")
	weights, err := filepath.Abs("../../assets/fmnist_dit.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	write := func(extra string) {
		text := `name = "cal"
output = "` + dir + `"
[model]
weights = "` + weights + `"
heads = 3
` + extra + `[sampling]
sampler = "ddim"
steps = 10
cfg = 2.0
guide = "all"
samples = 2
batch = 4
[methods.none]
[methods.magcache]
thresh = 0.1
`
		if err := os.WriteFile(exp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	out := mustRun(t, "calibrate", exp, "--samples", "4", "--target", "1.3", "--methods", "magcache,fbcache", "--param", "fbcache.decide=per-sample")
	for _, want := range []string{"TeaCache rescale polynomial", "calibration written to", "magcache  target  1.30x", "measured", "fbcache   target  1.30x"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cal := filepath.Join(dir, "calibration-ddim-10-cfg2.json")
	f, err := runner.ReadCalibrationFile(cal)
	if err != nil || f.Steps != 10 || f.Images != 4 {
		t.Fatalf("calibration file: %+v, %v", f, err)
	}
	db, err := store.OpenReadOnly(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	if row, err := db.Calibration(f.Key()); err != nil || row == nil {
		t.Fatalf("database row: %+v, %v", row, err)
	}
	db.Close()

	write(`calibration = "` + cal + `"` + "\n")
	out = mustRun(t, "run", exp, "--no-metrics")
	if !strings.Contains(out, "magcache thresh=0.1") {
		t.Errorf("run with the calibration:\n%s", out)
	}
	// The file now names a calibration measured at CFG 2: a run at CFG 3 is refused, but
	// recalibrating for CFG 3 must not be (calibrate writes the file; it does not read it).
	text, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exp, []byte(strings.Replace(string(text), "cfg = 2.0", "cfg = 3.0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "run", exp, "--no-metrics"); err == nil || !strings.Contains(err.Error(), "CFG 2") {
		t.Errorf("a CFG-2 calibration for a CFG-3 run: %v, want a refusal", err)
	}
	if _, err := run(t, "calibrate", exp, "--samples", "2", "--target", "1.3", "--methods", "magcache", "--out", filepath.Join(dir, "cfg3.json")); err != nil {
		t.Errorf("recalibrating an experiment whose calibration file is stale: %v", err)
	}
	for _, bad := range [][]string{
		{"calibrate", exp, "--target", "0.5"},
		{"calibrate", exp, "--target", "2", "--param", "magcache.thresh=1"},
		{"calibrate", exp, "--target", "2", "--param", "toca.N=3"},
		{"calibrate", exp, "--samples", "0"},
	} {
		if _, err := run(t, bad...); err == nil {
			t.Errorf("runbench %s: no error", strings.Join(bad, " "))
		}
	}
}
