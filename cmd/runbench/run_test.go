package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// childEnv holds the JSON arguments of a runbench child process (the kill test re-executes the
// test binary as runbench, since main.go may not register run and merge yet).
const childEnv = "CACHEBENCH_RUNBENCH_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			fmt.Fprintln(os.Stderr, "child args:", err)
			os.Exit(2)
		}
		root := sweepRoot()
		root.SetArgs(a)
		if err := root.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, "runbench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sweepRoot is runbench's root with run and merge, whether or not main.go registers them yet.
func sweepRoot() *cobra.Command {
	root := newRoot()
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	for _, c := range []*cobra.Command{newRunCmd(), newMergeCmd()} {
		if !have[c.Name()] {
			root.AddCommand(c)
		}
	}
	return root
}

// runbench runs the sweep-enabled CLI in-process.
func runbench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := sweepRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustRunbench(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runbench(t, args...)
	if err != nil {
		t.Fatalf("runbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tinyExperiment writes an experiment on the golden DiT (depth 4, 16 tokens, latents): three
// configurations of samples samples, DDPM steps steps, batches of batch.
func tinyExperiment(t *testing.T, dir string, samples, steps, batch int) string {
	t.Helper()
	path := filepath.Join(dir, "tiny.toml")
	body := fmt.Sprintf(`name = "tiny"
output = %q

[model]
weights = %q
heads = 4

[sampling]
sampler = "ddpm"
steps = %d
cfg = 1.5
samples = %d
seed = 7
batch = %d

[methods.none]

[methods.fora]
N = 2

[methods.toca]
N = 2
ratio = 0.3
scheduler = "constant"
`, filepath.Join(dir, "out"), golden.Path("dit/weights.safetensors"), steps, samples, batch)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func resultRowsOf(t *testing.T, path string) []string {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.ResultRows()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func diffRows(got, want []string) string {
	g := map[string]bool{}
	for _, r := range got {
		g[r] = true
	}
	w := map[string]bool{}
	for _, r := range want {
		w[r] = true
	}
	var b strings.Builder
	for _, r := range want {
		if !g[r] {
			fmt.Fprintf(&b, "- %s\n", r)
		}
	}
	for _, r := range got {
		if !w[r] {
			fmt.Fprintf(&b, "+ %s\n", r)
		}
	}
	if b.Len() == 0 && len(got) != len(want) {
		fmt.Fprintf(&b, "%d rows, want %d (duplicates)\n", len(got), len(want))
	}
	return b.String()
}

// One sweep: every configuration done, planned FLOPs stored and equal to what ran, a rerun does
// nothing; two shards merged equal the unsharded file; merging again changes nothing.
func TestRunShardMergeCLI(t *testing.T) {
	dir := t.TempDir()
	exp := tinyExperiment(t, dir, 5, 6, 2)
	whole := filepath.Join(dir, "whole.db")
	out := mustRunbench(t, "run", exp, "--db", whole)
	if strings.Count(out, "5/5 samples (5 now") != 3 {
		t.Fatalf("first run:\n%s", out)
	}
	db, err := store.Open(whole)
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := db.Runs()
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3", len(runs))
	}
	for _, r := range runs {
		f, err := db.RunFLOPs(r.ID)
		if err != nil || f == nil || f.RowsPerImage != 2 {
			t.Fatalf("run %s flops %+v (%v)", r.Method, f, err)
		}
		exec, n, err := db.ExecutedFLOPs(r.ID)
		if err != nil || n != 5 || exec != 5*f.PerImage {
			t.Errorf("%s: executed %d FLOPs over %d samples, planned %d per image", r.Method, exec, n, f.PerImage)
		}
		if r.Status != store.StatusDone || (r.Method == "none") != (f.Speedup == 1) {
			t.Errorf("%s: status %s, speedup %g", r.Method, r.Status, f.Speedup)
		}
	}
	db.Close()
	if out := mustRunbench(t, "run", exp, "--db", whole); strings.Contains(out, "now") {
		t.Errorf("rerun of a finished sweep sampled again:\n%s", out)
	}
	if out := mustRunbench(t, "run", exp, "--db", whole, "--list"); strings.Count(out, "5/5 samples") != 3 {
		t.Errorf("--list:\n%s", out)
	}

	// Shards with another batch size, into the default shard files, then merged.
	for i := range 2 {
		mustRunbench(t, "run", exp, "--shard", fmt.Sprintf("%d/2", i), "--batch", "3")
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "out", "results-shard-*-of-2.db"))
	if len(shards) != 2 {
		t.Fatalf("shard files %v", shards)
	}
	merged := filepath.Join(dir, "merged.db")
	mustRunbench(t, append([]string{"merge", merged}, shards...)...)
	want := resultRowsOf(t, whole)
	if d := diffRows(resultRowsOf(t, merged), want); d != "" {
		t.Fatalf("2 shards + merge differ from the unsharded run:\n%s", d)
	}
	out = mustRunbench(t, "merge", merged, shards[0])
	if !strings.Contains(out, "0 batches with 0 samples copied") {
		t.Errorf("re-merge copied something:\n%s", out)
	}
	if d := diffRows(resultRowsOf(t, merged), want); d != "" {
		t.Fatalf("re-merge changed the results:\n%s", d)
	}
}

// The shipped experiments expand as smoke tests without weights; listing creates no file.
func TestShippedExperimentsList(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	files, _ := filepath.Glob(filepath.Join(root, "experiments", "*.toml"))
	if len(files) < 4 {
		t.Fatalf("shipped experiments: %v", files)
	}
	cocoFiles(t)
	for _, f := range files {
		db := filepath.Join(t.TempDir(), "none.db")
		args := []string{"run", f, "--samples", "8", "--random-weights", "--no-metrics", "--list", "--db", db}
		if base := filepath.Base(f); base == "default_unet.toml" {
			if _, err := os.Stat(filepath.Join(root, "assets", "fmnist_unet.safetensors")); err != nil {
				t.Logf("%s: assets/fmnist_unet.safetensors not trained yet, not listed", base)
				continue
			}
		}
		if base := filepath.Base(f); strings.HasPrefix(base, "default") {
			// The embedded default ships its weights (paths relative to the repository root).
			t.Chdir(root)
			args = []string{"run", "experiments/" + base, "--samples", "8", "--list", "--db", db}
		}
		out := mustRunbench(t, args...)
		if n := strings.Count(out, "0/8 samples"); n < 4 {
			t.Errorf("%s: %d configurations listed:\n%s", f, n, out)
		}
		if _, err := os.Stat(db); err == nil {
			t.Errorf("%s: --list created %s", f, db)
		}
	}
}

// Malformed files report every problem at once, each with file:line.
func TestRunMalformedCLI(t *testing.T) {
	out, err := runbench(t, "run", filepath.Join("..", "..", "experiments", "testdata", "malformed.toml"))
	if err == nil {
		t.Fatalf("malformed experiment accepted:\n%s", out)
	}
	msg := err.Error()
	for _, want := range []string{"malformed.toml:7: model.weights", "malformed.toml:11: sampling.sampler", "malformed.toml:18: methods.tocca: unknown method",
		"malformed.toml:22: methods.toca.N: element 1", "malformed.toml:27: methods.fora.N: want an integer", "malformed.toml:3: colour: unknown key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n"); n < 15 {
		t.Errorf("%d problem lines, want every problem:\n%s", n, msg)
	}
	for _, bad := range [][]string{{"run", "x.toml", "--shard", "2/2"}, {"run", "x.toml", "--shard", "a"}, {"merge", "only.db"}} {
		if _, err := runbench(t, bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// A typed 0 is not "flag not given": --samples 0 once ran every sample of the file.
	shipped := filepath.Join("..", "..", "experiments", "toca_dit_ddim50.toml")
	for _, flag := range []string{"--samples", "--batch"} {
		if _, err := runbench(t, "run", shipped, flag, "0", "--list", "--random-weights"); err == nil || !strings.Contains(err.Error(), flag+" 0: want a positive number") {
			t.Errorf("%s 0: err = %v", flag, err)
		}
	}
}

// cocoFiles stands in for the COCO-30k captions the PixArt-α files name: one caption with
// T5-XXL-wide features (the configuration hash covers them, so even listing reads them).
func cocoFiles(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "COCO_caption_prompts_30k.txt"), []byte("a cat on a mat\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	feats := checkpoint.NewF32(make([]float32, 5*4096), 1, 5, 4096)
	mask := checkpoint.NewI64([]int64{1, 1, 1, 1, 0}, 1, 5)
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "coco30k_t5.safetensors"),
		map[string]*checkpoint.Tensor{"caption_feature": feats, "attention_mask": mask}, nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CACHEBENCH_COCO", dir)
	// The SD v1.5 files' CLIP text contexts: the caption, then the empty prompt's null context.
	sd := checkpoint.NewF32(make([]float32, 2*77*768), 2, 77, 768)
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "coco30k_sd15_context.safetensors"), map[string]*checkpoint.Tensor{"context": sd}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "imagenet_prompts.txt"), []byte("tench, Tinca tinca\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "imagenet_sd15_context.safetensors"), map[string]*checkpoint.Tensor{"context": sd}, nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CACHEBENCH_IMAGENET", dir)
}
