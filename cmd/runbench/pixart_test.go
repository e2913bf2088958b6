package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
)

// TestPixArtCLI runs runbench forward and sample --replay on the PixArt-α golden files, the
// model read off the weights: the forward's output and the ToCa-PixArt replay's states and
// trace (actions, token counts and token sets in the official row order) equal the golden.
func TestPixArtCLI(t *testing.T) {
	dir := t.TempDir()
	w := golden.Path("pixart/weights.safetensors")
	fwd := filepath.Join(dir, "fwd.safetensors")
	mustRun(t, "forward", "--weights", w, "--heads", "4", "--inputs", golden.Path("pixart/forward.safetensors"), "--out", fwd, "--intermediates")
	got, want := golden.Open(t, fwd), golden.Open(t, "pixart/forward.safetensors")
	for _, name := range []string{"out", "block_3", "y_proj", "block0_cross"} {
		if e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, name)); e > 1e-5 {
			t.Errorf("forward %s: relative error %.3g > 1e-5", name, e)
		}
	}

	out, trace := filepath.Join(dir, "toca.safetensors"), filepath.Join(dir, "toca.json")
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "dpmpp", "--steps", "20", "--cfg", "4.5",
		"--replay", golden.Path("pixart-caching/toca.safetensors"), "--out", out, "--method", "toca-pixart",
		"--param", "N=3", "--param", "ratio=0.30", "--trace", trace)
	got, want = golden.Open(t, out), golden.Open(t, "pixart-caching/toca.safetensors")
	for _, name := range []string{"x_000", "x_010", "sample"} {
		if e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, name)); e > 1e-5 {
			t.Errorf("replay %s: relative error %.3g > 1e-5", name, e)
		}
	}
	type module struct {
		Action      string    `json:"action"`
		NFresh      int       `json:"n_fresh"`
		FreshSorted [][]int32 `json:"fresh_sorted"`
	}
	type file struct {
		Schedule []string `json:"schedule"`
		Calls    []struct {
			Step   int `json:"step"`
			Layers []struct {
				Attn, Cross, MLP module
			} `json:"layers"`
		} `json:"calls"`
	}
	read := func(path string) file {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f file
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	mine, ref := read(trace), read(golden.Path("pixart-caching/toca_actions.json"))
	if !slices.Equal(mine.Schedule, ref.Schedule) {
		t.Fatalf("schedule %v, want %v", mine.Schedule, ref.Schedule)
	}
	for k, c := range ref.Calls {
		if mine.Calls[k].Step != c.Step {
			t.Errorf("call %d: step %d, want %d (PixArt counts up)", k, mine.Calls[k].Step, c.Step)
		}
		for li, l := range c.Layers {
			ml := mine.Calls[k].Layers[li]
			for _, pair := range [][2]module{{ml.Attn, l.Attn}, {ml.Cross, l.Cross}, {ml.MLP, l.MLP}} {
				g, w := pair[0], pair[1]
				if g.Action != w.Action || g.NFresh != w.NFresh || len(g.FreshSorted) != len(w.FreshSorted) {
					t.Fatalf("call %d layer %d: %s/%d, want %s/%d", k, li, g.Action, g.NFresh, w.Action, w.NFresh)
				}
				for r := range w.FreshSorted {
					if !slices.Equal(g.FreshSorted[r], w.FreshSorted[r]) {
						t.Fatalf("call %d layer %d row %d: tokens differ from the official trace", k, li, r)
					}
				}
			}
		}
	}
	// A DiT sampler path is refused with one clear error.
	if _, err := run(t, "sample", "--weights", w, "--heads", "4", "--sampler", "ddim", "--steps", "20", "--cfg", "4.5",
		"--replay", golden.Path("pixart-caching/toca.safetensors"), "--out", out); err == nil || !strings.Contains(err.Error(), "dpmpp") {
		t.Errorf("ddim replay of a PixArt golden: %v, want an error naming dpmpp", err)
	}
}

// TestPixArtExperiment runs a prompted sweep on the golden PixArt-α with the tiny caption
// encoder (its width and length are the golden model's): every sample keeps its prompt, sample
// i takes prompt i mod P, and a prompt file that does not fit the model is refused before any
// compute.
func TestPixArtExperiment(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.txt")
	if err := os.WriteFile(prompts, []byte("a photo of a Sneaker\nTrouser\na Bag on a plain background\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exp := func(promptFile string) string {
		path := filepath.Join(dir, "pixart.toml")
		body := fmt.Sprintf(`name = "pixart"
output = %q

[model]
family = "pixart"
weights = %q
heads = 4

[prompts]
file = %q
encoder = "fmnist-tiny"

[sampling]
sampler = "dpmpp"
steps = 6
cfg = 4.5
samples = 4
seed = 3
batch = 2

[methods.none]

[methods.toca-pixart]
N = 2
`, filepath.Join(dir, "out"), golden.Path("pixart/weights.safetensors"), promptFile)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	path := exp(prompts)
	mustRunbench(t, "run", path)
	db, err := store.Open(filepath.Join(dir, "out", "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := []string{"a photo of a Sneaker", "Trouser", "a Bag on a plain background", "a photo of a Sneaker"}
	for run := int64(1); run <= 2; run++ {
		samples, err := db.Samples(run)
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) != 4 {
			t.Fatalf("run %d: %d samples, want 4", run, len(samples))
		}
		for _, s := range samples {
			if s.Prompt == nil || *s.Prompt != want[s.Index] || *s.Label != s.Index%3 {
				t.Errorf("run %d sample %d: prompt %v label %v, want %q, %d", run, s.Index, s.Prompt, *s.Label, want[s.Index], s.Index%3)
			}
		}
	}
	long := filepath.Join(dir, "long.txt")
	if err := os.WriteFile(long, []byte(strings.Repeat("a ", 13)+"Bag\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runbench(t, "run", exp(long)); err == nil || !strings.Contains(err.Error(), "prompt") {
		t.Errorf("a 14-word caption for a 12-token model: %v, want an error naming the prompt", err)
	}
}

// TestPixArtFlopsCLI counts PixArt-XL/2's FLOPs from the preset alone: none is the baseline
// (1×), ToCa-PixArt N=3 R=70% saves FLOPs, and FORA (r0 = 0) saves more.
func TestPixArtFlopsCLI(t *testing.T) {
	speedup := func(params ...string) float64 {
		args := append([]string{"flops", "--preset", "PixArt-XL/2", "--sampler", "dpmpp", "--steps", "20", "--cfg", "4.5", "--json", "--method"}, params...)
		var rep flopsReport
		if err := json.Unmarshal([]byte(mustRun(t, args...)), &rep); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(rep.Model, "PixArt-α depth 28, hidden 1152") || rep.Steps != 20 {
			t.Fatalf("model %q, %d steps", rep.Model, rep.Steps)
		}
		return rep.Speedup
	}
	none, toca, fora := speedup("none"), speedup("toca-pixart", "--param", "N=3", "--param", "ratio=0.30"), speedup("toca-pixart", "--param", "N=3", "--param", "ratio=0")
	if none != 1 || !(toca > 1 && fora > toca) {
		t.Errorf("FLOPs speedups none %.3f, ToCa %.3f, FORA %.3f: want 1 < ToCa < FORA", none, toca, fora)
	}
}

// runbench flops counts MagCache's calibrated schedule from a calibration file (the shipped one of
// the embedded DiT), refuses one measured with another step count, and refuses to dry-run a
// method that decides from the data.
func TestFlopsCalibrated(t *testing.T) {
	root := filepath.Join("..", "..")
	w, cal := filepath.Join(root, "assets", "fmnist_dit.safetensors"), filepath.Join(root, "assets", "fmnist_dit_calibration.json")
	out := mustRun(t, "flops", "--weights", w, "--heads", "3", "--sampler", "ddim", "--steps", "50", "--cfg", "3", "--method", "magcache",
		"--param", "thresh=0.13184", "--calibration", cal, "--json")
	var rep flopsReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Speedup < 1.9 || rep.Speedup > 2.1 {
		t.Errorf("magcache at its calibrated 2x threshold: %.3fx", rep.Speedup)
	}
	if _, err := run(t, "flops", "--weights", w, "--heads", "3", "--sampler", "ddim", "--steps", "40", "--cfg", "3", "--method", "magcache", "--calibration", cal); err == nil ||
		!strings.Contains(err.Error(), "50 steps") {
		t.Errorf("a 50-step calibration for 40 steps: %v", err)
	}
	if _, err := run(t, "flops", "--weights", w, "--heads", "3", "--method", "teacache"); err == nil || !strings.Contains(err.Error(), "data") {
		t.Errorf("teacache dry run: %v, want a refusal", err)
	}
}
