package runner_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/runner"
)

// fakeExtractor turns pixels into a few cheap deterministic features (weighted pixel sums), so
// the feature and metric plumbing is tested without running Inception.
type fakeExtractor struct{ calls int }

const fakePool, fakeSpatial, fakeLogits = 6, 4, 5

func (f *fakeExtractor) ID() string { return "fake@1" }

func (f *fakeExtractor) Extract(pix []uint8, n, h, w int, _ func(int, int)) (*metrics.Features, error) {
	f.calls++
	per := h * w * 3
	out := &metrics.Features{N: n, PoolDim: fakePool, SpatialDim: fakeSpatial, LogitDim: fakeLogits}
	feat := func(i, k int) float32 {
		var s float64
		for j, p := range pix[i*per : (i+1)*per] {
			s += float64(p) * math.Sin(float64((j+1)*(k+1)))
		}
		return float32(s / float64(per))
	}
	for i := range n {
		for k := range fakePool {
			out.Pool = append(out.Pool, feat(i, k))
		}
		for k := range fakeSpatial {
			out.Spatial = append(out.Spatial, feat(i, 10+k))
		}
		for k := range fakeLogits {
			out.Logits = append(out.Logits, feat(i, 20+k)/10)
		}
	}
	return out, nil
}

const rgbExperiment = `
name = "rgb"
[model]
arch = { input_size = 8, patch_size = 2, in_channels = 3, hidden = 32, depth = 2, heads = 2, num_classes = 10 }
[sampling]
sampler = "ddim"
steps = 5
cfg = 1.5
samples = 6
seed = 3
batch = 4
[methods.none]
[methods.fora]
N = [2, 3]
`

// sweepFixture is a 3-channel random DiT, the experiment's items with fake features, and
// metrics against statistics of fake features of random images.
func sweepFixture(t *testing.T) (dit.Config, []runner.SweepItem, *fakeExtractor, *runner.MetricsSpec, func() (runner.Model, error)) {
	t.Helper()
	e, err := experiments.Parse("rgb.toml", []byte(rgbExperiment), experiments.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.Model.Config()
	ex := &fakeExtractor{}
	fs := &runner.FeatureSpec{Extractor: ex.ID(), Pool: fakePool, Spatial: fakeSpatial, Logits: fakeLogits}
	items := runner.ExperimentItems(e, c.String(), "random-seed-0", "go:ops_sequential", "", "", fs)
	if len(items) != 3 || items[1].Label != "fora N=2" || items[2].RawParams["N"] != "3" {
		t.Fatalf("items %+v", items)
	}
	pix := make([]uint8, 8*8*8*3)
	for i := range pix {
		pix[i] = uint8(i * 37 % 251)
	}
	refF, _ := (&fakeExtractor{}).Extract(pix, 8, 8, 8, nil)
	ref, err := refF.Stats()
	if err != nil {
		t.Fatal(err)
	}
	spec := &runner.MetricsSpec{Names: []string{"fid", "sfid", "is", "precision", "recall", "kid"}, Ref: ref, Reference: "ref.npz", Resize: "none",
		RefFeatures: func() (*metrics.Features, error) { return refF, nil }}
	load := func() (runner.Model, error) {
		b, err := engine.New("")
		if err != nil {
			return nil, err
		}
		return dit.New(b, c, dit.RandomWeights(c, 0))
	}
	return c, items, ex, spec, load
}

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rows(t *testing.T, db *store.DB) string {
	t.Helper()
	r, err := db.ResultRows()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(r, "\n")
}

// A sweep stores features and computes metrics once all samples are there; two shards with
// another batch size, merged and evaluated, equal it bit for bit (samples, features, metrics).
func TestSweepFeaturesShardsMerge(t *testing.T) {
	dir := t.TempDir()
	c, items, ex, spec, load := sweepFixture(t)
	loads := 0
	counted := func() (runner.Model, error) { loads++; return load() }
	sw := runner.Sweep{Items: items, Arch: c, Load: counted, DB: openDB(t, filepath.Join(dir, "whole.db")), OutDir: dir, BatchSize: 4,
		Extractor: ex, Metrics: spec}
	res, err := runner.RunSweep(context.Background(), sw)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Done != 6 || len(r.Metrics) != 6 || r.FLOPs == nil || r.NoMetric != "" {
			t.Fatalf("%s: done %d, metrics %v, flops %v, %s", r.Item.Label, r.Done, r.Metrics, r.FLOPs, r.NoMetric)
		}
	}
	if res[0].FLOPs.Speedup != 1 || !(res[1].FLOPs.Speedup > 1) {
		t.Errorf("speedups %g, %g", res[0].FLOPs.Speedup, res[1].FLOPs.Speedup)
	}
	// A rerun loads nothing and computes nothing.
	calls := ex.calls
	if res, err = runner.RunSweep(context.Background(), sw); err != nil || res[2].Done != 0 || loads != 1 || ex.calls != calls {
		t.Fatalf("rerun: %v, done %d, %d loads, %d extractions", err, res[2].Done, loads, ex.calls-calls)
	}

	var shards []string
	for i := range 2 {
		p := filepath.Join(dir, "shard"+string(rune('0'+i))+".db")
		shards = append(shards, p)
		sw := sw
		sw.DB, sw.BatchSize, sw.Shard = openDB(t, p), 2, runner.Shard{I: i, N: 2}
		res, err := runner.RunSweep(context.Background(), sw)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Done != 3 || res[0].Metrics != nil || !strings.Contains(res[0].NoMetric, "after `runbench merge`") {
			t.Fatalf("shard %d: %+v", i, res[0])
		}
		sw.DB.Close()
	}
	merged := openDB(t, filepath.Join(dir, "merged.db"))
	for _, s := range shards {
		if _, err := merged.Merge(s); err != nil {
			t.Fatal(err)
		}
	}
	runs, _ := merged.Runs()
	for _, r := range runs {
		if _, err := runner.EvaluateRun(merged, r, *spec); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := rows(t, merged), rows(t, sw.DB); got != want {
		t.Fatalf("sharded + merged differs from the unsharded sweep:\n%s\nwant\n%s", got, want)
	}
}

// Features of a latent model are refused with the reason; a wrong method parameter or a
// missing backend stop the sweep before anything runs.
func TestSweepErrors(t *testing.T) {
	dir := t.TempDir()
	c, items, ex, _, load := sweepFixture(t)
	db := openDB(t, filepath.Join(dir, "e.db"))
	latent := c
	latent.InChannels = 4
	sw := runner.Sweep{Items: items[:1], Arch: latent, DB: db, OutDir: dir, BatchSize: 2, Extractor: ex,
		Load: func() (runner.Model, error) {
			b, _ := engine.New("")
			return dit.New(b, latent, dit.RandomWeights(latent, 0))
		}}
	if _, err := runner.RunSweep(context.Background(), sw); !errors.Is(err, runner.ErrLatentFeatures) {
		t.Errorf("latent features: %v", err)
	}
	bad := items[1]
	bad.RawParams = map[string]string{"N": "0"}
	sw = runner.Sweep{Items: []runner.SweepItem{bad}, Arch: c, DB: db, OutDir: dir, BatchSize: 2, Load: load}
	bad.Config.Features = nil
	sw.Items = []runner.SweepItem{bad}
	if _, err := runner.RunSweep(context.Background(), sw); err == nil || !strings.Contains(err.Error(), "fora N=2") {
		t.Errorf("bad parameter: %v", err)
	}
	nb := items[0]
	nb.Config.Backend, nb.Config.Features = "", nil
	sw.Items = []runner.SweepItem{nb}
	if _, err := runner.RunSweep(context.Background(), sw); err == nil {
		t.Error("an item without a backend was accepted")
	}
}
