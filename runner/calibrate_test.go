package runner_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/runner"
)

// calibrated is one calibration pass of the embedded Fashion-MNIST DiT (DDIM-20, CFG 2, 8
// samples), shared by the tests.
var calibrated struct {
	once sync.Once
	job  runner.CalibrateJob
	res  *runner.CalibrationResult
	err  error
}

func calibrateFMNIST(t *testing.T) (runner.CalibrateJob, *runner.CalibrationResult) {
	t.Helper()
	calibrated.once.Do(func() {
		b, err := engine.New("")
		if err != nil {
			calibrated.err = err
			return
		}
		m, err := dit.Load(b, "../assets/fmnist_dit.safetensors", 3)
		if err != nil {
			calibrated.err = err
			return
		}
		calibrated.job = runner.CalibrateJob{Config: runner.Config{Model: m.Config.String(), Weights: "fmnist", Sampler: "ddim", Steps: "20",
			CFGScale: 2, Guide: diffusion.GuidanceAll, Seed: 0, NumSamples: 8}, Model: m, BatchSize: 8}
		calibrated.res, calibrated.err = runner.Calibrate(context.Background(), calibrated.job)
	})
	if calibrated.err != nil {
		t.Fatal(calibrated.err)
	}
	return calibrated.job, calibrated.res
}

// The calibration measures what the executor measures (the host's recomputation agrees with
// the gates' statistics), fits a usable TeaCache polynomial, and round-trips through its file
// and the results database.
func TestCalibrationFile(t *testing.T) {
	job, res := calibrateFMNIST(t)
	f := res.File
	if res.StatAgreement > 1e-4 {
		t.Errorf("host and executor statistics differ by %.2g (relative)", res.StatAgreement)
	}
	if len(f.TeaCache) != runner.TeaCacheDegree+1 || len(f.MagRatios) != 20 || len(f.MagStd) != 20 || len(f.FBCacheByCall) != 19 || f.Images != 8 {
		t.Fatalf("calibration shape: %d coefficients, %d ratios, %d stds, %d FBCache calls, %d images",
			len(f.TeaCache), len(f.MagRatios), len(f.MagStd), len(f.FBCacheByCall), f.Images)
	}
	for k, q := range f.FBCacheByCall {
		if !(q[0] <= q[1] && q[1] <= q[2] && q[0] > 0) {
			t.Errorf("FBCache quantiles of call %d: %v", k+1, q)
		}
	}
	t.Logf("TeaCache %v (fit %+v); MagCache ratios %.4f; FBCache %v", f.TeaCache, *f.TeaCacheFit, f.MagRatios, f.FBCacheDiff)

	dir := t.TempDir()
	path := filepath.Join(dir, "cal.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := runner.ReadCalibrationFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Weights != "fmnist" || back.StepSpec != "20" || len(back.TeaCache) != len(f.TeaCache) || back.TeaCache[0] != f.TeaCache[0] || back.MagStd[5] != f.MagStd[5] {
		t.Fatalf("read back %+v", back)
	}
	mc, err := methods.LoadCalibration(path)
	if err != nil || mc.Steps != 20 || mc.MagRatios[3] != f.MagRatios[3] {
		t.Fatalf("methods read %+v, %v", mc, err)
	}
	if err := runner.CheckCalibration(back, job.Config); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*runner.Config)
		want   string
	}{
		{func(c *runner.Config) { c.Steps = "50" }, "20 steps (this run: 50)"},
		{func(c *runner.Config) { c.Sampler = "ddpm" }, "sampler ddim"},
		{func(c *runner.Config) { c.CFGScale = 4 }, "CFG 2"},
		{func(c *runner.Config) { c.Model = "DiT-XL/2" }, "model"},
		{func(c *runner.Config) { c.Weights = "random-seed-0" }, "weights fmnist"},
	} {
		c := job.Config
		tc.change(&c)
		if err := runner.CheckCalibration(back, c); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("mismatch %q: %v", tc.want, err)
		}
	}

	db, err := store.Open(filepath.Join(dir, "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := f.Store(db, "rev"); err != nil {
		t.Fatal(err)
	}
	row, err := db.Calibration(f.Key())
	if err != nil || row == nil || row.NumSamples != 8 || row.NumSteps != 20 || !strings.Contains(row.JSON, `"weights_sha256": "fmnist"`) {
		t.Fatalf("stored %+v, %v", row, err)
	}
}

// The acceptance test: on the embedded model, thresholds searched for 1.5x and 2x (replaying
// each method on the recording) grow with the target, and sampling with them reaches the target
// FLOPs speedup within 10 %.
func TestCalibratedThresholdsReachTargets(t *testing.T) {
	job, res := calibrateFMNIST(t)
	cal := &res.File.Calibration
	targets := []float64{1.5, 2}
	for _, method := range []string{"teacache", "fbcache", "magcache"} {
		picks, err := res.Recording.Search(method, nil, cal, targets)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range picks {
			if i > 0 && p.Threshold < picks[i-1].Threshold {
				t.Errorf("%s: threshold %g for %gx is below %g for %gx", method, p.Threshold, p.Target, picks[i-1].Threshold, picks[i-1].Target)
			}
			if !p.Reachable {
				t.Errorf("%s: %gx unreachable (best %.3fx)", method, p.Target, p.Predicted)
				continue
			}
			got, _, err := runner.MeasureSpeedup(context.Background(), job, method, p.Params(nil), cal)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s thresh %.5g: target %.2fx, predicted %.3fx, measured %.3fx", method, p.Threshold, p.Target, p.Predicted, got)
			if math.Abs(got/p.Target-1) > 0.1 {
				t.Errorf("%s thresh %g: measured %.3fx for a %.2fx target (predicted %.3fx)", method, p.Threshold, got, p.Target, p.Predicted)
			}
		}
	}
}

// An experiment names a calibration file in [model] (or per method): the methods that read one
// get it and hash it; a file measured on other sampling settings is a problem of the file, and
// one measured on another model or weights stops the sweep before anything is sampled.
func TestExperimentCalibration(t *testing.T) {
	job, res := calibrateFMNIST(t)
	dir := t.TempDir()
	cal := filepath.Join(dir, "cal.json")
	if err := res.File.Write(cal); err != nil {
		t.Fatal(err)
	}
	text := func(steps int, where string) string {
		model := "calibration = \"" + cal + "\"\n"
		entry := ""
		if where == "entry" {
			model, entry = "", model
		}
		return `name = "cal"
[model]
weights = "../assets/fmnist_dit.safetensors"
heads = 3
` + model + `[sampling]
sampler = "ddim"
steps = ` + fmt.Sprint(steps) + `
cfg = 2.0
guide = "all"
samples = 2
batch = 2
[methods.none]
[methods.teacache]
thresh = 0.02
` + entry + `[methods.magcache]
thresh = 0.1
` + entry
	}
	_, err := experiments.Parse("cal.toml", []byte(text(10, "model")), experiments.Overrides{})
	t.Logf("%v", err)
	if err == nil ||
		!strings.Contains(err.Error(), "cal.toml:5: model.calibration") || !strings.Contains(err.Error(), "20 steps (this run: 10)") {
		t.Fatalf("a 20-step calibration in a 10-step experiment: %v", err)
	}
	bad := strings.Replace(text(20, "entry"), "[methods.none]", "[methods.none]\ncalibration = \""+cal+"\"", 1)
	if _, err := experiments.Parse("cal.toml", []byte(bad), experiments.Overrides{}); err == nil || !strings.Contains(err.Error(), "method none reads no calibration") {
		t.Fatalf("calibration for method none: %v", err)
	}
	for _, where := range []string{"model", "entry"} {
		e, err := experiments.Parse("cal.toml", []byte(text(20, where)), experiments.Overrides{})
		if err != nil {
			t.Fatal(err)
		}
		for weights, wantErr := range map[string]string{"other": "weights fmnist", "fmnist": ""} {
			items := runner.ExperimentItems(e, job.Config.Model, weights, "go:ops_sequential", "", "", nil)
			if items[0].Config.Calibration != "" || items[1].Config.Calibration == "" || items[1].Config.Calibration != items[2].Config.Calibration {
				t.Fatalf("%s: calibrations %q %q %q (none reads none)", where, items[0].Config.Calibration, items[1].Config.Calibration, items[2].Config.Calibration)
			}
			db, err := store.Open(filepath.Join(t.TempDir(), "r.db"))
			if err != nil {
				t.Fatal(err)
			}
			loaded := false
			sw := runner.Sweep{Items: items, Arch: job.Model.(*dit.Model).Config, DB: db, OutDir: t.TempDir(), BatchSize: 2,
				Load: func() (runner.Model, error) { loaded = true; return job.Model, nil }}
			out, err := runner.RunSweep(context.Background(), sw)
			if wantErr != "" {
				t.Logf("%s: %v", where, err)
				if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), cal) || loaded {
					t.Errorf("%s: calibration of other weights: %v (model loaded: %v)", where, err, loaded)
				}
			} else if err != nil {
				t.Errorf("%s: %v", where, err)
			} else if len(out) != 3 || out[2].FLOPs == nil || out[2].FLOPs.Speedup <= 1 {
				t.Errorf("%s: magcache's planned FLOPs %+v", where, out[2].FLOPs)
			}
			db.Close()
		}
	}
}
