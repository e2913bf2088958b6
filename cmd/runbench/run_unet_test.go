package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/runner"
)

// unetExperiment writes a sweep of the golden tiny SD UNet (heads 4, 16×16 latents, context 32)
// prompted through the fmnist-tiny encoder, PLMS with CFG 7.5, decoded by depth-to-space-2 into
// 32×32 grey images; extra holds the [methods.*] tables (and anything after them).
func unetExperiment(t *testing.T, dir, prompts string, steps, samples, batch int, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "unet.toml")
	body := fmt.Sprintf(`name = "unet"
output = %q

[model]
family = "unet"
weights = %q
heads = 4
latent = 16
decoder = "depth-to-space-2"

[prompts]
file = %q
%s

[sampling]
sampler = "plms"
steps = %d
cfg = 7.5
samples = %d
seed = 3
batch = %d

%s`, filepath.Join(dir, "out"), golden.Path("sd-unet/weights.safetensors"), filepath.Join(dir, "prompts.txt"), prompts, steps, samples, batch, extra)
	if err := os.WriteFile(filepath.Join(dir, "prompts.txt"), []byte("a photo of a Sneaker\nTrouser\na Bag on a plain background\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUNetExperiment sweeps the golden UNet under none, DeepCache, ToMeSD and DaTo: every sample
// is a 32×32 grey PNG decoded by depth-to-space-2 and keeps its prompt (sample i takes prompt i
// mod 3), each run's planned FLOPs (the UNet counter over PLMS's steps + 1 calls) equal what its
// batches executed, the caches save FLOPs, step statistics cover every call, and the
// Fashion-MNIST metrics are computed on the decoded images.
func TestUNetExperiment(t *testing.T) {
	dir := t.TempDir()
	path := unetExperiment(t, dir, `encoder = "fmnist-tiny"`, 4, 2, 2, `[methods.none]

[methods.deepcache]
N = 2

[methods.tomesd]
ratio = 0.5

[methods.dato]
strategy = "uniform"
N = 2

[metrics]
extractor = "fmnist"
weights = "../../assets/fmnist_classifier.safetensors"
reference = "../../assets/fmnist_test_stats.npz"
names = ["class_acc", "psnr_vs_none", "ssim_vs_none"]
`)
	// Step statistics with one audited image per batch: the recorder follows PLMS's calls.
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append([]byte("record = \"light\"\naudit = 1\n"), body...), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRunbench(t, "run", path)
	db, err := store.Open(filepath.Join(dir, "out", "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 4 {
		t.Fatalf("%d runs, want 4", len(runs))
	}
	want := []string{"a photo of a Sneaker", "Trouser"}
	for _, r := range runs {
		if r.Status != store.StatusDone || r.Sampler != "plms" || r.Steps != 4 {
			t.Errorf("run %d (%s): status %s, sampler %s, %d steps", r.ID, r.Method, r.Status, r.Sampler, r.Steps)
		}
		if !strings.Contains(r.ConfigJSON, `"vae":"depth-to-space-2"`) || !strings.Contains(r.ConfigJSON, `"guide_channels":-1`) {
			t.Errorf("run %d config %s", r.ID, r.ConfigJSON)
		}
		samples, err := db.Samples(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if s.Prompt == nil || *s.Prompt != want[s.Index] || *s.Label != s.Index%3 {
				t.Errorf("run %d sample %d: prompt %v label %v", r.ID, s.Index, s.Prompt, *s.Label)
			}
			raw, err := os.ReadFile(s.OutputPath)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(raw))
			if err != nil || img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32 || img.ColorModel() != color.GrayModel {
				t.Fatalf("run %d sample %d: %v, %v, %v: want a 32×32 grey image", r.ID, s.Index, err, img.Bounds(), img.ColorModel())
			}
		}
		f, err := db.RunFLOPs(r.ID)
		if err != nil || f == nil {
			t.Fatalf("run %d: planned FLOPs %v, %v", r.ID, f, err)
		}
		exec, counted, err := db.ExecutedFLOPs(r.ID)
		if err != nil || counted != 2 || exec/int64(counted) != f.PerImage {
			t.Errorf("run %d (%s): executed %d FLOPs over %d images, planned %d per image (%v)", r.ID, r.Method, exec, counted, f.PerImage, err)
		}
		if (r.Method == "none") != (f.Speedup == 1) || f.Speedup < 1 {
			t.Errorf("run %d (%s): FLOPs speedup %.3f", r.ID, r.Method, f.Speedup)
		}
		stats, err := db.StepStats(r.ID)
		if err != nil || len(stats) == 0 {
			t.Errorf("run %d (%s): %d step statistics, %v", r.ID, r.Method, len(stats), err)
		}
		calls := map[int]bool{}
		for _, st := range stats {
			calls[st.Call] = true
		}
		if len(calls) != 5 {
			t.Errorf("run %d (%s): step statistics of %d calls, want PLMS 4's 5", r.ID, r.Method, len(calls))
		}
		ms, err := db.Metrics(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, m := range ms {
			names[m.Name] = true
		}
		if !names["class_acc"] || !names["psnr_vs_none"] {
			t.Errorf("run %d (%s): metrics %v", r.ID, r.Method, ms)
		}
	}
}

// The UNet's samples do not depend on the batch size or the shard split: two shards of other
// batch sizes, merged, hold what one process stored (DaTo draws its pruning noise per sample).
func TestUNetShardsDeterministic(t *testing.T) {
	methods := "[methods.none]\n\n[methods.dato]\nstrategy = \"uniform\"\nN = 2\n"
	whole := t.TempDir()
	mustRunbench(t, "run", unetExperiment(t, whole, `encoder = "fmnist-tiny"`, 4, 3, 3, methods))
	split := t.TempDir()
	path := unetExperiment(t, split, `encoder = "fmnist-tiny"`, 4, 3, 3, methods)
	mustRunbench(t, "run", path, "--shard", "0/2", "--batch", "1")
	mustRunbench(t, "run", path, "--shard", "1/2", "--batch", "2")
	merged := filepath.Join(split, "merged.db")
	mustRunbench(t, "merge", merged, filepath.Join(split, "out", "results-shard-0-of-2.db"), filepath.Join(split, "out", "results-shard-1-of-2.db"))
	got, want := resultRowsOf(t, merged), resultRowsOf(t, filepath.Join(whole, "out", "results.db"))
	if d := diffRows(got, want); d != "" {
		t.Errorf("sharded run differs from the whole run:\n%s", d)
	}
}

// A UNet experiment reads precomputed text contexts (the prompts, then the empty prompt's null
// context, as runbench encode-text writes them) and samples with ldm's DDIM too (planned FLOPs
// over its one call per step equal the executed ones); it refuses a context file of another
// width naming it before any compute, and a transformer-stack cache.
func TestUNetContextsAndFits(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, width int) string {
		ctx := make([]float32, 4*7*width)
		for k := range ctx {
			ctx[k] = float32(k%11)/11 - 0.5
		}
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, map[string]*checkpoint.Tensor{runner.ContextField: checkpoint.NewF32(ctx, 4, 7, width)}, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ctx32.safetensors", 32)
	// Sampled with ldm's DDIM (one call per step on Stable Diffusion's schedule) under DeepCache.
	path := unetExperiment(t, dir, fmt.Sprintf("features = %q", good), 4, 1, 1, "[methods.deepcache]\nN = 2\n")
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(body), `sampler = "plms"`, `sampler = "ddim"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRunbench(t, "run", path)
	rows := resultRowsOf(t, filepath.Join(dir, "out", "results.db"))
	if len(rows) == 0 || !strings.Contains(strings.Join(rows, "\n"), "contexts@") {
		t.Errorf("result rows %v: want the contexts' identity in the configuration", rows)
	}
	db, err := store.Open(filepath.Join(dir, "out", "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, errF := db.RunFLOPs(1)
	exec, n, errE := db.ExecutedFLOPs(1)
	if errF != nil || errE != nil || f == nil || n != 1 || exec != f.PerImage || f.Speedup < 1.3 {
		t.Errorf("DDIM DeepCache: planned %+v, executed %d over %d images (%v %v)", f, exec, n, errF, errE)
	}
	wide := write("ctx768.safetensors", 768)
	out, err := runbench(t, "run", unetExperiment(t, t.TempDir(), fmt.Sprintf("features = %q", wide), 2, 1, 1, "[methods.none]\n"))
	if err == nil || !strings.Contains(err.Error(), "prompts.features: "+wide) || !strings.Contains(err.Error(), "context_dim 32") || strings.Contains(out, "loading") {
		t.Errorf("768-wide contexts for a 32-wide UNet: %v\n%s", err, out)
	}
	_, err = runbench(t, "run", unetExperiment(t, t.TempDir(), `encoder = "fmnist-tiny"`, 2, 1, 1, "[methods.none]\n\n[methods.fora]\nN = 2\n"))
	if err == nil || !strings.Contains(err.Error(), "methods.fora: method fora does not apply to Stable Diffusion's UNet") {
		t.Errorf("fora in a UNet experiment: %v", err)
	}
}

// runbench flops counts the UNet's plans over PLMS's steps + 1 calls, or ldm's DDIM's one per
// step (the weights give the blocks; --sampler plms is the UNet's default).
func TestUNetFlopsCLI(t *testing.T) {
	count := func(params ...string) flopsReport {
		args := append([]string{"flops", "--model", "unet", "--weights", golden.Path("sd-unet/weights.safetensors"), "--heads", "4", "--latent", "16",
			"--steps", "4", "--cfg", "7.5", "--json", "--method"}, params...)
		var rep flopsReport
		if err := json.Unmarshal([]byte(mustRun(t, args...)), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	none, dc := count("none"), count("deepcache", "--param", "N=2")
	if none.Speedup != 1 || dc.Speedup <= 1.3 || len(dc.PerStepFLOPs) != 5 || dc.Steps != 4 || dc.Sampler != "plms" || !strings.Contains(dc.Model, "context 12 tokens") {
		t.Errorf("none %.3f×, deepcache N=2 %.3f× over %d calls of %d steps (%s, %s)", none.Speedup, dc.Speedup, len(dc.PerStepFLOPs), dc.Steps, dc.Sampler, dc.Model)
	}
	if _, err := run(t, "flops", "--model", "unet", "--weights", golden.Path("sd-unet/weights.safetensors"), "--heads", "4", "--latent", "16",
		"--sampler", "dpmpp", "--method", "none"); err == nil || !strings.Contains(err.Error(), "plms or ddim") {
		t.Errorf("dpmpp on the UNet: %v", err)
	}
	// ldm's DDIM: one call per step.
	args := []string{"flops", "--model", "unet", "--weights", golden.Path("sd-unet/weights.safetensors"), "--heads", "4", "--latent", "16",
		"--sampler", "ddim", "--steps", "4", "--cfg", "7.5", "--json", "--method", "none"}
	var rep flopsReport
	if err := json.Unmarshal([]byte(mustRun(t, args...)), &rep); err != nil || len(rep.PerStepFLOPs) != 4 || rep.TotalFLOPs*5 != none.TotalFLOPs*4 {
		t.Errorf("DDIM 4: %d calls, %d FLOPs (PLMS 4: %d), %v", len(rep.PerStepFLOPs), rep.TotalFLOPs, none.TotalFLOPs, err)
	}
}
