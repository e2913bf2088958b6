package reports

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

// fixtureRun is one run of the synthetic database: what the runner and `runbench metrics` would store.
type fixtureRun struct {
	method    string
	params    map[string]any
	steps     int
	cfg       float64
	status    string
	imageMS   float64 // per image, stored as scope image rows; 0: none
	stepMS    float64 // per image, stored as scope step rows only (no image rows); 0: none
	metrics   map[string]float64
	flops     float64 // what the test FLOPs hook returns per image; 0: unknown
	baseFLOPs float64 // the hook's count for method none on the same schedule; 0: unknown
	device    string
	batchFLOP []int64          // executed FLOPs stored per batch (store.Batch.FLOPs); nil: none
	runFLOPs  *store.RunFLOPs  // planned FLOPs stored in run_flops; nil: none
	dupMetric bool             // also store the FID against a second reference over fewer samples
	stepStats []store.StepStat // step statistics stored with the first batch; nil: recorded off
}

var fixtureRuns = []fixtureRun{
	{method: "none", steps: 50, cfg: 1.5, imageMS: 4549, flops: 23.74e12,
		metrics: map[string]float64{"fid": 2.43, "sfid": 4.40, "is": 241.25, "precision": 0.80, "recall": 0.59}},
	{method: "steps", params: map[string]any{"steps": 20}, steps: 20, cfg: 1.5, imageMS: 1820, flops: 9.496e12,
		metrics: map[string]float64{"fid": 3.48, "sfid": 4.89, "is": 223.49, "precision": 0.79, "recall": 0.57}},
	{method: "fora", params: map[string]any{"N": 3}, steps: 50, cfg: 1.5, imageMS: 2191, flops: 8.59e12,
		metrics: map[string]float64{"fid": 3.88, "sfid": 6.43, "is": 229.02, "precision": 0.79, "recall": 0.55}},
	{method: "fora", params: map[string]any{"N": 5}, steps: 50, cfg: 1.5, imageMS: 1500, flops: 5.24e12,
		metrics: map[string]float64{"fid": 6.58, "sfid": 11.29, "is": 193.01, "precision": 0.72, "recall": 0.50}},
	{method: "toca", params: map[string]any{"N": 3, "ratio": 0.07, "ratio_scheduler": "ToCa-ddim50"}, steps: 50, cfg: 1.5, imageMS: 2087, flops: 10.23e12,
		metrics: map[string]float64{"fid": 3.04, "sfid": 5.14, "is": 230.70, "precision": 0.79}},
	{method: "toca", params: map[string]any{"N": 5, "ratio": 0.05}, steps: 50, cfg: 1.5, status: store.StatusRunning, imageMS: 1700},
	// A second table: cfg 4.5 with no none run, one latency from step timings, one from another device.
	{method: "duca", params: map[string]any{"N": 3, "note": "a|b*c"}, steps: 20, cfg: 4.5, stepMS: 1301, flops: 5e12, baseFLOPs: 10e12,
		metrics: map[string]float64{"fid": 28.02, "clip_score": 16.43}},
	{method: "fora", params: map[string]any{"N": 3}, steps: 20, cfg: 4.5, imageMS: 1100, device: "other-gpu",
		metrics: map[string]float64{"fid": 29.84, "clip_score": 16.42}},
}

// writeFixture builds the synthetic database through the store API, as a sweep would.
func writeFixture(t *testing.T, dir string) string {
	t.Helper()
	return writeDB(t, filepath.Join(dir, "bench.db"), fixtureRuns...)
}

// writeDB stores runs in a new database at path: two batches of two images each.
func writeDB(t *testing.T, path string, runs ...fixtureRun) string {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, f := range runs {
		addRun(t, db, f)
	}
	return path
}

func addRun(t *testing.T, db *store.DB, f fixtureRun) {
	t.Helper()
	cfg := map[string]any{"model": "DiT-XL/2", "method": f.method, "sampler": "ddim", "steps": f.steps, "cfg_scale": f.cfg, "seed": 0, "backend": "go", "device": f.device}
	if f.params != nil {
		cfg["params"] = f.params
	}
	cj, err := store.CanonicalJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev := f.device
	if dev == "" {
		dev = "cpu"
	}
	run, _, err := db.EnsureRun(store.Run{ConfigJSON: string(cj), Method: f.method, Model: "DiT-XL/2", WeightsHash: "abc123",
		Sampler: "ddim", Steps: f.steps, CFGScale: f.cfg, Seed: 0, NumSamples: 4, BatchSize: 2, Backend: "go", Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 2 {
		var ts []store.Timing
		if f.imageMS > 0 {
			// Per-step rows too: the image rows must win over them.
			ts = append(ts, store.Timing{Scope: "step", Name: "forward", Count: 2 * f.steps, TotalMS: 999},
				store.Timing{Scope: "image", Name: "sample", Count: 2, TotalMS: 2 * f.imageMS})
		}
		if f.stepMS > 0 {
			ts = append(ts, store.Timing{Scope: "step", Name: "forward", Count: 2 * f.steps, TotalMS: 2 * f.stepMS * 0.9},
				store.Timing{Scope: "step", Name: "sampler", Count: 2 * f.steps, TotalMS: 2 * f.stepMS * 0.1})
		}
		batch := store.Batch{Index: b, FirstSample: 2 * b, NumSamples: 2, WallMS: 5000, Timings: ts}
		if b < len(f.batchFLOP) {
			batch.FLOPs = f.batchFLOP[b]
		}
		if b == 0 {
			batch.StepStats = f.stepStats
		}
		if err := db.CommitBatch(run.ID, batch); err != nil {
			t.Fatal(err)
		}
	}
	// Run-level timings (compilation) are not per image: they must not reach the latency.
	if err := db.AddTimings(run.ID, []store.Timing{{Scope: "image", Name: "compile", Count: 1, TotalMS: 1e6}}); err != nil {
		t.Fatal(err)
	}
	if f.runFLOPs != nil {
		if err := db.PutRunFLOPs(run.ID, *f.runFLOPs); err != nil {
			t.Fatal(err)
		}
	}
	var ms []store.Metric
	for _, name := range sortedKeys(f.metrics) {
		ms = append(ms, store.Metric{Name: name, Value: f.metrics[name], N: 50000, Reference: "VIRTUAL_imagenet256_labeled.npz", Extractor: "inception@1a2b"})
	}
	if f.dupMetric {
		ms = append(ms, store.Metric{Name: "fid", Value: 99, N: 1000, Reference: "other.npz", Extractor: "inception@1a2b"})
	}
	if err := db.PutMetrics(run.ID, ms); err != nil {
		t.Fatal(err)
	}
	status := f.status
	if status == "" {
		status = store.StatusDone
	}
	if err := db.SetStatus(run.ID, status); err != nil {
		t.Fatal(err)
	}
}

// fixtureFLOPs is the test's FLOPs hook: the counts the fixture declares, by method and params.
func fixtureFLOPs(_ *store.DB, run store.Run) (FLOPsCount, error) {
	var c config
	if err := json.Unmarshal([]byte(run.ConfigJSON), &c); err != nil {
		return FLOPsCount{}, err
	}
	for _, f := range fixtureRuns {
		if f.method == run.Method && formatParams(f.params) == formatParams(c.Params) && f.steps == run.Steps && f.cfg == run.CFGScale {
			return FLOPsCount{PerImage: positive(known(f.flops)), Baseline: positive(known(f.baseFLOPs))}, nil
		}
	}
	return FLOPsCount{}, nil
}
