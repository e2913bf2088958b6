package main

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/inception/inceptiontest"
)

// The whole metrics path through the real Inception code (formula weights) on a 3-channel
// random DiT: features are stored per sample, metrics computed when all samples are there, and
// `merge --metrics` recomputes exactly the same values from the stored features. A latent
// model's run says why it has no metrics.
func TestRunMetricsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Inception-v3 on 2 images (~10 s); skipped with -short")
	}
	dir := t.TempDir()
	weights := filepath.Join(dir, "inception.safetensors")
	if err := inceptiontest.WriteFormulaWeights(weights); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.npz")
	mu := make([]float64, 2048)
	for i := range mu {
		mu[i] = 0.01 * float64(i%7)
	}
	writeStats(t, ref, mu, 0.5)
	exp := filepath.Join(dir, "rgb.toml")
	body := fmt.Sprintf(`output = %q
outputs = "hash"
[model]
arch = { input_size = 8, patch_size = 4, in_channels = 3, hidden = 16, depth = 1, heads = 2, num_classes = 10 }
[sampling]
sampler = "ddim"
steps = 2
samples = 2
batch = 2
[methods.none]
[metrics]
extractor = "inception"
weights = %q
reference = %q
names = ["fid", "is"]
`, filepath.Join(dir, "out"), weights, ref)
	if err := os.WriteFile(exp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.db")
	out := mustRunbench(t, "run", exp, "--db", whole)
	if !strings.Contains(out, "fid ") || !strings.Contains(out, "is ") {
		t.Fatalf("no metrics after a complete run:\n%s", out)
	}
	if pngs, _ := filepath.Glob(filepath.Join(dir, "out", "samples", "*", "*.png")); len(pngs) != 0 {
		t.Errorf(`outputs = "hash" kept %d files`, len(pngs))
	}
	// Shards carry no metrics (a shard cannot compute FID); here the complete run is copied
	// without its metrics, and merge --metrics recomputes them from the stored features.
	// (Sharded sampling with features equals the unsharded run: harness TestSweepFeaturesShardsMerge.)
	copied := filepath.Join(dir, "copy.db")
	mustRunbench(t, "merge", copied, whole)
	cdb, _ := store.Open(copied)
	if _, err := cdb.SQL().Exec("DELETE FROM metrics"); err != nil {
		t.Fatal(err)
	}
	cdb.Close()
	merged := filepath.Join(dir, "merged.db")
	out = mustRunbench(t, "merge", merged, copied, "--metrics", exp)
	if !strings.Contains(out, "fid ") {
		t.Errorf("merge --metrics:\n%s", out)
	}
	if d := diffRows(resultRowsOf(t, merged), resultRowsOf(t, whole)); d != "" {
		t.Fatalf("recomputed metrics differ from the run's:\n%s", d)
	}
	if out := mustRunbench(t, "run", exp, "--db", whole, "--shard", "1/2"); !strings.Contains(out, "2/2 samples") {
		t.Errorf("a shard of a finished run:\n%s", out)
	}
	db, _ := store.Open(whole)
	runs, _ := db.Runs()
	ms, _ := db.Metrics(runs[0].ID)
	db.Close()
	refID, _ := metrics.ReferenceID(ref)
	if len(ms) != 2 || ms[0].N != 2 || !strings.HasPrefix(ms[0].Extractor, "pytorch-fid-inception-v3@") || ms[0].Reference != refID {
		t.Errorf("stored metrics %+v", ms)
	}

	// A latent model: the run goes on and says why there are no metrics.
	latent := strings.Replace(body, "in_channels = 3", "in_channels = 4", 1)
	if err := os.WriteFile(exp, []byte(latent), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRunbench(t, "run", exp, "--db", filepath.Join(dir, "latent.db"))
	if !strings.Contains(out, "metrics skipped: the model outputs 4-channel 8x8 latents") {
		t.Errorf("latent run:\n%s", out)
	}

	// The latent model with [model] vae, the ADM way end to end: a synthetic reference batch in
	// the ADM layout (arr_0 images with mu, sigma, mu_s, sigma_s, written by stats --keep-images),
	// latents decoded by the golden two-level VAE (8×8 → 16×16 RGB), FID, sFID, IS, precision and
	// recall from the decoded images, merge --metrics recomputing them, and the report's columns.
	refDir := filepath.Join(dir, "refimgs")
	if err := os.Mkdir(refDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		img := image.NewRGBA(image.Rect(0, 0, 16, 16))
		for p := range img.Pix {
			img.Pix[p] = uint8((p*(7+i) + 31*i) % 251)
		}
		f, err := os.Create(filepath.Join(refDir, fmt.Sprintf("%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	adm := filepath.Join(dir, "ref_adm.npz")
	mustRunbench(t, "stats", "--images", refDir, "--weights", weights, "--out", adm, "--keep-images")
	withVAE := strings.Replace(latent, "[sampling]", fmt.Sprintf("vae = %q\nvae_batch = 1\n[sampling]", golden.Path("sd-vae/weights.safetensors")), 1)
	withVAE = strings.Replace(withVAE, "samples = 2", "samples = 4", 1)
	withVAE = strings.Replace(withVAE, fmt.Sprintf("reference = %q\nnames = [\"fid\", \"is\"]", ref),
		fmt.Sprintf("reference = %q\nreference_images = %q\nnames = [\"fid\", \"sfid\", \"is\", \"precision\", \"recall\"]", adm, adm), 1)
	if !strings.Contains(withVAE, "sfid") {
		t.Fatalf("experiment not rewritten:\n%s", withVAE)
	}
	if err := os.WriteFile(exp, []byte(withVAE), 0o644); err != nil {
		t.Fatal(err)
	}
	vdb := filepath.Join(dir, "vae.db")
	out = mustRunbench(t, "run", exp, "--db", vdb)
	for _, m := range []string{"fid ", "sfid ", "precision ", "recall "} {
		if !strings.Contains(out, m) || strings.Contains(out, "metrics skipped") {
			t.Fatalf("latent run with a VAE lacks %q:\n%s", m, out)
		}
	}
	db, _ = store.Open(vdb)
	runs, _ = db.Runs()
	db.Close()
	if len(runs) != 1 || !strings.Contains(runs[0].ConfigJSON, `"vae":"sd-vae@`) {
		t.Errorf("run with a VAE: %d runs, config %s", len(runs), runs[0].ConfigJSON)
	}
	vcopy := filepath.Join(dir, "vcopy.db")
	mustRunbench(t, "merge", vcopy, vdb)
	cdb, _ = store.Open(vcopy)
	if _, err := cdb.SQL().Exec("DELETE FROM metrics"); err != nil {
		t.Fatal(err)
	}
	cdb.Close()
	vmerged := filepath.Join(dir, "vmerged.db")
	mustRunbench(t, "merge", vmerged, vcopy, "--metrics", exp)
	if d := diffRows(resultRowsOf(t, vmerged), resultRowsOf(t, vdb)); d != "" {
		t.Fatalf("recomputed metrics of the decoded run differ:\n%s", d)
	}
	rep := mustRunbench(t, "report", vmerged, "--format", "md")
	for _, col := range []string{"FID", "sFID", "IS", "Precision", "Recall"} {
		if !strings.Contains(rep, "| "+col+" ") {
			t.Errorf("report lacks column %s:\n%s", col, rep)
		}
	}
	if !strings.Contains(rep, "latent decoding") || !strings.Contains(rep, "feature extraction") {
		t.Errorf("report lacks the stages' throughput:\n%s", rep)
	}
}

// The embedded default's path in `make bench`: shards sampled apart and merged with --metrics
// give the same metrics as the unsharded sweep, PSNR/SSIM against none included (the fewer-steps
// configuration is paired with the none run of the other step count, as in the sweep).
func TestShardMergePairedMetricsCLI(t *testing.T) {
	dir := t.TempDir()
	exp := filepath.Join(dir, "fm.toml")
	body := fmt.Sprintf(`output = %q
outputs = "keep"
[model]
weights = %q
heads = 3
[sampling]
sampler = "ddim"
steps = 4
cfg = 2.0
guide = "all"
samples = 4
batch = 2
[methods.none]
[methods.steps]
steps = 2
[methods.fora]
N = 2
[metrics]
extractor = "fmnist"
weights = %q
reference = %q
names = ["fid", "class_acc", "psnr_vs_none", "ssim_vs_none"]
`, filepath.Join(dir, "whole"), repoPath("assets/fmnist_dit.safetensors"), repoPath("assets/fmnist_classifier.safetensors"), repoPath("assets/fmnist_test_stats.npz"))
	if err := os.WriteFile(exp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.db")
	out := mustRunbench(t, "run", exp, "--db", whole)
	if strings.Count(out, "psnr_vs_none") != 3 {
		t.Fatalf("unsharded sweep: want psnr_vs_none on 3 runs:\n%s", out)
	}
	var shards []string
	for i := range 2 {
		db := filepath.Join(dir, fmt.Sprintf("shard%d.db", i))
		mustRunbench(t, "run", exp, "--shard", fmt.Sprintf("%d/2", i), "--db", db, "--out", filepath.Join(dir, "sharded"))
		shards = append(shards, db)
	}
	// A bad second input is found before the first one is written.
	bogus := filepath.Join(dir, "bogus.db")
	if err := os.WriteFile(bogus, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(dir, "partial.db")
	if _, err := runbench(t, "merge", partial, shards[0], bogus); err == nil || !strings.Contains(err.Error(), "nothing written") {
		t.Errorf("merge with a bad second input: %v", err)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("merge with a bad second input created the output")
	}
	merged := filepath.Join(dir, "merged.db")
	out = mustRunbench(t, append([]string{"merge", merged}, append(shards, "--metrics", exp)...)...)
	if strings.Count(out, "psnr_vs_none") != 3 {
		t.Errorf("merge --metrics: want psnr_vs_none on 3 runs:\n%s", out)
	}
	if d := diffRows(resultRowsOf(t, merged), resultRowsOf(t, whole)); d != "" {
		t.Fatalf("shards + merge --metrics differ from the unsharded sweep:\n%s", d)
	}
	// Merging the merged database again, with the metrics recomputed, stores each metric once:
	// references name the none run by its configuration and the reference file by its content.
	again := filepath.Join(dir, "again.db")
	mustRunbench(t, "merge", again, merged, "--metrics", exp)
	mustRunbench(t, "merge", again, merged, "--metrics", exp)
	db, _ := store.Open(again)
	defer db.Close()
	var rows, distinct int
	if err := db.SQL().QueryRow(`SELECT count(*), count(DISTINCT run_id || '/' || name) FROM metrics`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != distinct {
		t.Errorf("%d metric rows for %d (run, metric) pairs after merging twice", rows, distinct)
	}
	var ref string
	if err := db.SQL().QueryRow(`SELECT reference FROM metrics WHERE name = 'psnr_vs_none' LIMIT 1`).Scan(&ref); err != nil || !strings.HasPrefix(ref, "none run ") {
		t.Errorf("psnr_vs_none reference %q (%v), want the none run's configuration hash", ref, err)
	}
}

// repoPath is a path from the repository root (tests run in cmd/runbench).
func repoPath(p string) string { return filepath.Join("..", "..", p) }
