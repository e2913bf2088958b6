package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/runner"
)

func job(t *testing.T, dir string, batch int, shard runner.Shard) runner.Job {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.Load(b, golden.Path("dit/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return runner.Job{
		Config: runner.Config{Model: m.Config.String(), Weights: "golden", Method: "toca", Sampler: "ddpm", Steps: "10",
			CFGScale: 1.5, Guide: 3, Seed: 11, NumSamples: 5},
		RawParams: map[string]string{"N": "2", "ratio": "0.3", "scheduler": "constant"},
		Model:     m, BatchSize: batch, OutDir: dir, DB: db, Shard: shard,
	}
}

func files(t *testing.T, dir string) map[string][]byte {
	out := map[string][]byte{}
	for i := range 5 {
		name := fmt.Sprintf("%06d.safetensors", i)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			out[name] = data
		}
	}
	return out
}

// Batch size and shard split change no byte of any sample; an interrupted run resumes where it
// stopped without redoing committed batches.
func TestRunDeterministicShardsResume(t *testing.T) {
	ref := t.TempDir()
	res, err := runner.Run(context.Background(), job(t, ref, 5, runner.Shard{}))
	if err != nil || res.Done != 5 {
		t.Fatalf("reference run: %v (%d done)", err, res.Done)
	}
	want := files(t, ref)
	if len(want) != 5 {
		t.Fatalf("reference run wrote %d samples", len(want))
	}
	// Two shards with batch 2, into one folder and database.
	dir := t.TempDir()
	for i := range 2 {
		if _, err := runner.Run(context.Background(), job(t, dir, 2, runner.Shard{I: i, N: 2})); err != nil {
			t.Fatal(err)
		}
	}
	got := files(t, dir)
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s differs between batch 5 unsharded and batch 2 in 2 shards", name)
		}
	}
	// Cancel after the first batch, then resume: only the missing samples are generated.
	dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	j := job(t, dir, 2, runner.Shard{})
	j.Progress = func(done, total int) { cancel() }
	res, err = runner.Run(ctx, j)
	if err == nil || res.Done != 2 {
		t.Fatalf("cancelled run: err %v, %d done (want 2)", err, res.Done)
	}
	j.Progress = nil
	res, err = runner.Run(context.Background(), j)
	if err != nil || res.Done != 3 {
		t.Fatalf("resumed run: err %v, %d done (want 3)", err, res.Done)
	}
	for name, w := range files(t, dir) {
		if !bytes.Equal(w, want[name]) {
			t.Errorf("%s differs after resume", name)
		}
	}
	run, err := j.DB.Run(res.Run.ID)
	if err != nil || run.Status != store.StatusDone {
		t.Errorf("status %q (%v), want done", run.Status, err)
	}
	if again, err := runner.Run(context.Background(), j); err != nil || again.Done != 0 {
		t.Errorf("finished run redid %d samples (%v)", again.Done, err)
	}
}

// A method setting the model cannot take is refused before the run is stored: nothing is left
// "running" (Δ-DiT with more cached blocks than the model's depth, which only loading reveals).
func TestRunRefusesBadSettingFirst(t *testing.T) {
	dir := t.TempDir()
	j := job(t, dir, 2, runner.Shard{})
	j.Method, j.RawParams = "deltadit", map[string]string{"blocks": "99"}
	if _, err := runner.Run(context.Background(), j); err == nil || !strings.Contains(err.Error(), "blocks=99") {
		t.Fatalf("deltadit blocks=99 on a depth-4 model: %v", err)
	}
	runs, err := j.DB.Runs()
	if err != nil || len(runs) != 0 {
		t.Errorf("%d runs stored (%v), want none", len(runs), err)
	}
}

// Every batch stores its caches' peak memory (FORA: both module outputs of every block, for
// every row); a run without a cache stores none; a merge copies them.
func TestRunCacheBytes(t *testing.T) {
	dir := t.TempDir()
	j := job(t, dir, 5, runner.Shard{})
	j.Method, j.RawParams = "fora", map[string]string{"N": "2"}
	res, err := runner.Run(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	l := j.Model.Layout()
	want := int64(l.Depth*len(l.Modules)*2*5*l.Tokens*l.Hidden) * 4 // rows = 2·5 with CFG, float32
	peak, err := j.DB.PeakCacheBytes(res.Run.ID)
	if err != nil || peak["total"] != want || peak["attn"] != want/2 {
		t.Fatalf("fora peak cache %v (%v), want total %d", peak, err, want)
	}
	j.Method, j.RawParams = "none", nil
	res, err = runner.Run(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if peak, err := j.DB.PeakCacheBytes(res.Run.ID); err != nil || peak != nil {
		t.Errorf("none stored cache memory %v (%v)", peak, err)
	}
	merged, err := store.Open(filepath.Join(dir, "merged.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	if _, err := merged.Merge(filepath.Join(dir, "runs.db")); err != nil {
		t.Fatal(err)
	}
	runs, _ := merged.Runs()
	var got int64
	for _, r := range runs {
		if p, _ := merged.PeakCacheBytes(r.ID); p != nil {
			got = p["total"]
		}
	}
	if got != want {
		t.Errorf("merged peak cache %d, want %d", got, want)
	}
}
