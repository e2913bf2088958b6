package methods

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A calibration survives a write and a read; Check accepts its own setting and names every
// field that differs, with what to do.
func TestCalibrationRoundTrip(t *testing.T) {
	c := &Calibration{Model: "DiT-XL/2", Sampler: "ddim", Steps: 50, CFG: 1.5, Images: 8,
		TeaCache: []float64{498.65, -283.78, 55.86, -3.82, 0.264}, MagRatios: make([]float64, 50),
		FBCacheDiff: []Quantile{{Q: 0.5, Value: 0.04}, {Q: 0.9, Value: 0.12}}}
	for i := range c.MagRatios {
		c.MagRatios[i] = 1 - float64(i)/200
	}
	path := filepath.Join(t.TempDir(), "calib.json")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCalibration(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != c.Model || got.Steps != 50 || got.CFG != 1.5 || !slices.Equal(got.TeaCache, c.TeaCache) ||
		!slices.Equal(got.MagRatios, c.MagRatios) || !slices.Equal(got.FBCacheDiff, c.FBCacheDiff) {
		t.Errorf("read back %+v", got)
	}
	if err := got.Check("DiT-XL/2", "ddim", 50, 1.5); err != nil {
		t.Errorf("own setting: %v", err)
	}
	err = got.Check("DiT-S/2", "ddpm", 25, 4)
	if err == nil {
		t.Fatal("another setting: no error")
	}
	for _, want := range []string{path, `model "DiT-XL/2" (this run: "DiT-S/2")`, "sampler ddim (this run: ddpm)", "50 steps (this run: 25)", "CFG 1.5 (this run: 4)", "runbench calibrate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestCalibrationInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"syntax":    `{"model": "m",`,
		"no model":  `{"sampler": "ddim", "steps": 10}`,
		"steps":     `{"model": "m", "sampler": "ddim", "steps": 0}`,
		"ratios":    `{"model": "m", "sampler": "ddim", "steps": 3, "mag_ratios": [1, 1]}`,
		"negative":  `{"model": "m", "sampler": "ddim", "steps": 2, "mag_ratios": [1, -1]}`,
		"quantile":  `{"model": "m", "sampler": "ddim", "steps": 2, "fbcache_diff": [{"q": 2, "value": 1}]}`,
		"no sample": `{"model": "m", "steps": 2}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCalibration(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := LoadCalibration(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
	if err := (&Calibration{Model: "m", Sampler: "s", Steps: 1}).Write(filepath.Join(dir, "ok.json")); err != nil {
		t.Errorf("minimal calibration: %v", err)
	}
}
