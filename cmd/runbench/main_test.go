package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

// run executes runbench in-process and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard) // progress bars; errors come back as the returned error
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("runbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestForwardCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.safetensors")
	mustRun(t, "forward", "--weights", golden.Path("checkpoint/weights.pt"), "--heads", "4",
		"--inputs", golden.Path("dit/forward.safetensors"), "--out", out, "--cfg", "4")
	got := golden.Open(t, out)
	want := golden.Open(t, "dit/forward.safetensors")
	for name, tol := range map[string]float64{"out": 1e-5, "out_cfg": 2e-5} {
		if e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, name)); e > tol {
			t.Errorf("%s: rel error %.3g > %g", name, e, tol)
		}
	}
	if s := got.Tensors["out"].Shape; fmt.Sprint(s) != "[3 8 8 8]" {
		t.Errorf("out shape %v, want [3 8 8 8]", s)
	}
}

// Replay accepts the whole CFG state (testdata/dit) and image rows only (testdata/caching), and
// writes the layout it was given.
func TestReplayCLI(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		weights, replay, sampler, steps string
		rows                            int
	}{
		{"checkpoint/train_checkpoint.pt", "dit/sampling_ddpm.safetensors", "ddpm", "20", 4},
		{"dit/weights.safetensors", "dit/sampling_ddim.safetensors", "ddim", "20", 4},
		{"caching/weights.safetensors", "caching/baseline.safetensors", "ddim", "50", 2},
	} {
		out := filepath.Join(dir, strings.ReplaceAll(c.replay, "/", "_"))
		mustRun(t, "sample", "--weights", golden.Path(c.weights), "--heads", "4", "--sampler", c.sampler, "--steps", c.steps,
			"--cfg", "1.5", "--replay", golden.Path(c.replay), "--out", out)
		got, want := golden.Open(t, out), golden.Open(t, c.replay)
		var worst float64
		for name := range want.Tensors {
			if !strings.HasPrefix(name, "x_0") && name != "sample" {
				continue
			}
			g := golden.F32(t, got, name)
			if len(g) != len(golden.F32(t, want, name)) {
				t.Fatalf("%s: %s has %d values, golden %d", c.replay, name, len(g), len(golden.F32(t, want, name)))
			}
			worst = max(worst, golden.RelToMax(g, golden.F32(t, want, name)))
		}
		if worst > 1e-5 {
			t.Errorf("%s: worst rel error %.3g > 1e-5", c.replay, worst)
		}
		if r := got.Tensors["x_000"].Shape[0]; r != c.rows {
			t.Errorf("%s: output has %d rows, want %d (the replay file's layout)", c.replay, r, c.rows)
		}
		t.Logf("%s: worst rel error over x_k and sample %.3g", c.replay, worst)
	}
}

// Samples depend on (seed, index) only: batch size does not change any byte; a rerun resumes.
func TestGenerateDeterministicAndResumes(t *testing.T) {
	dir := t.TempDir()
	w := golden.Path("dit/weights.safetensors")
	common := []string{"sample", "--weights", w, "--heads", "4", "--sampler", "ddpm", "--steps", "8", "--num", "3", "--seed", "5"}
	mustRun(t, append(common, "--batch", "1", "--out-dir", filepath.Join(dir, "a"))...)
	mustRun(t, append(common, "--batch", "3", "--out-dir", filepath.Join(dir, "b"))...)
	for i := range 3 {
		name := fmt.Sprintf("%06d.safetensors", i)
		a, errA := os.ReadFile(filepath.Join(runDir(t, filepath.Join(dir, "a"), ""), name))
		b, errB := os.ReadFile(filepath.Join(runDir(t, filepath.Join(dir, "b"), ""), name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between batch 1 and batch 3 (%v %v)", name, errA, errB)
		}
	}
	out := mustRun(t, append(common, "--batch", "2", "--out-dir", filepath.Join(dir, "a"))...)
	if !strings.Contains(out, "already done") {
		t.Errorf("rerun did not resume: %s", out)
	}
	// A different seed is a different run with different noise.
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "ddpm", "--steps", "8", "--num", "1", "--seed", "6", "--out-dir", filepath.Join(dir, "c"))
	a, _ := os.ReadFile(filepath.Join(runDir(t, filepath.Join(dir, "a"), ""), "000000.safetensors"))
	c, _ := os.ReadFile(filepath.Join(runDir(t, filepath.Join(dir, "c"), ""), "000000.safetensors"))
	if bytes.Equal(a, c) {
		t.Error("seeds 5 and 6 gave the same sample")
	}
	// Another method into the same --out-dir writes a folder of its own: the first run's samples
	// stay (they were once overwritten while the database kept their hashes).
	mustRun(t, append(common, "--batch", "3", "--method", "fora", "--out-dir", filepath.Join(dir, "a"))...)
	again, _ := os.ReadFile(filepath.Join(runDir(t, filepath.Join(dir, "a"), "none-"), "000000.safetensors"))
	if !bytes.Equal(a, again) {
		t.Error("a fora run into the same --out-dir changed the none run's sample")
	}
	if _, err := os.Stat(filepath.Join(runDir(t, filepath.Join(dir, "a"), "fora-"), "000002.safetensors")); err != nil {
		t.Errorf("fora's samples: %v", err)
	}
}

// runDir is the one run folder (METHOD-HASH12) under out whose name starts with prefix.
func runDir(t *testing.T, out, prefix string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(out, prefix+"*"))
	var dirs []string
	for _, d := range m {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("%s: run folders %v, want one starting with %q", out, dirs, prefix)
	}
	return dirs[0]
}

func TestBadInputCLI(t *testing.T) {
	dir := t.TempDir()
	w := golden.Path("dit/weights.safetensors")
	truncated := filepath.Join(dir, "trunc.safetensors")
	data, _ := os.ReadFile(w)
	_ = os.WriteFile(truncated, data[:len(data)/2], 0o644)
	write := func(name string, ts map[string]*checkpoint.Tensor) string {
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, ts, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	x := make([]float32, 2*4*8*8)
	good := map[string]*checkpoint.Tensor{"x": checkpoint.NewF32(x, 2, 4, 8, 8), "t": checkpoint.NewI64([]int64{1, 2}, 2), "y": checkpoint.NewI64([]int64{1, 2}, 2)}
	with := func(k string, v *checkpoint.Tensor) map[string]*checkpoint.Tensor {
		m := map[string]*checkpoint.Tensor{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	nanX := append([]float32(nil), x...)
	nanX[7] = float32(nanf())
	fwd := func(in string, extra ...string) []string {
		return append([]string{"forward", "--weights", w, "--heads", "4", "--inputs", in, "--out", filepath.Join(dir, "o.safetensors")}, extra...)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{fwd(write("ok.safetensors", good), "--weights", filepath.Join(dir, "missing.pt")), "missing.pt"},
		{fwd(write("ok.safetensors", good), "--weights", truncated), "trunc.safetensors"},
		{fwd(write("ok.safetensors", good), "--heads", "0"), "--heads is required"},
		{fwd(write("ok.safetensors", good), "--heads", "16", "--preset", "DiT-XL/2"), "is not --preset DiT-XL/2"},
		{fwd(write("ok.safetensors", good), "--preset", "DiT-Q/2"), "unknown DiT preset"},
		{fwd(write("labels.safetensors", with("y", checkpoint.NewI64([]int64{1, 11}, 2)))), "label 11"},
		{fwd(write("shape.safetensors", with("x", checkpoint.NewF32(make([]float32, 2*3*8*8), 2, 3, 8, 8)))), "x has 384 values"},
		{fwd(write("rows.safetensors", with("t", checkpoint.NewI64([]int64{1}, 1)))), "want equal"},
		{fwd(write("nan.safetensors", with("x", checkpoint.NewF32(nanX, 2, 4, 8, 8)))), "non-finite"},
		{fwd(write("t5000.safetensors", with("t", checkpoint.NewI64([]int64{1, 5000}, 2)))), "t[1] = 5000: want a timestep"},
		{fwd(write("tneg.safetensors", with("t", checkpoint.NewI64([]int64{-1, 2}, 2)))), "t[0] = -1: want a timestep"},
		{fwd(write("noy.safetensors", map[string]*checkpoint.Tensor{"x": good["x"], "t": good["t"]})), `"y"`},
		{[]string{"sample", "--weights", w, "--heads", "4", "--sampler", "euler"}, "unknown sampler"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--steps", "2000"}, "--steps"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--labels", "3,12", "--out-dir", dir}, "--labels"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--steps", "20", "--replay", golden.Path("caching/baseline.safetensors"), "--out", filepath.Join(dir, "r")}, "x_init has shape"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--steps", "20", "--sampler", "ddpm", "--replay", golden.Path("dit/sampling_ddim.safetensors"), "--out", filepath.Join(dir, "r")}, "noise_000"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--replay", golden.Path("dit/sampling_ddim.safetensors"), "--out", filepath.Join(dir, "r"), "--db", filepath.Join(dir, "x.db")}, "--db does not apply to --replay"},
		{[]string{"sample", "--weights", w, "--heads", "4", "--replay", golden.Path("dit/sampling_ddim.safetensors"), "--out", filepath.Join(dir, "r"), "--record", "full"}, "--record does not apply to --replay"},
	} {
		out, err := run(t, c.args...)
		if err == nil {
			t.Errorf("runbench %s: want an error containing %q, got success\n%s", strings.Join(c.args, " "), c.want, out)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") {
			t.Errorf("runbench %s: error %q: want one line containing %q", strings.Join(c.args, " "), msg, c.want)
		}
	}
}

func nanf() float64 { return math.NaN() }

// The same commands work for other DiT sizes: patch 4, 3 channels (PNG output), 5 classes, no
// learned sigma; and patch 2, 1 channel, learned sigma.
func TestOtherSizesCLI(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []dit.Config{
		{InputSize: 16, PatchSize: 4, InChannels: 3, Hidden: 32, Depth: 2, Heads: 2, MLPRatio: 4, NumClasses: 5, LearnSigma: false},
		{InputSize: 8, PatchSize: 2, InChannels: 1, Hidden: 48, Depth: 3, Heads: 3, MLPRatio: 2, NumClasses: 3, LearnSigma: true},
	} {
		w := filepath.Join(dir, fmt.Sprintf("w%d.safetensors", i))
		if err := checkpoint.WriteSafetensors(w, dit.RandomWeights(c, 3).Tensors, nil); err != nil {
			t.Fatal(err)
		}
		n := c.InChannels * c.InputSize * c.InputSize
		in := filepath.Join(dir, fmt.Sprintf("in%d.safetensors", i))
		if err := checkpoint.WriteSafetensors(in, map[string]*checkpoint.Tensor{
			"x": checkpoint.NewF32(make([]float32, 2*n), 2, c.InChannels, c.InputSize, c.InputSize),
			"t": checkpoint.NewI64([]int64{10, 900}, 2), "y": checkpoint.NewI64([]int64{0, int64(c.NumClasses)}, 2),
		}, nil); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("out%d.safetensors", i))
		mustRun(t, "forward", "--weights", w, "--heads", fmt.Sprint(c.Heads), "--inputs", in, "--out", out)
		got := golden.Open(t, out).Tensors["out"].Shape
		if want := fmt.Sprint([]int{2, c.OutChannels(), c.InputSize, c.InputSize}); fmt.Sprint(got) != want {
			t.Errorf("%s: out shape %v, want %s", c, got, want)
		}
		sd := filepath.Join(dir, fmt.Sprintf("s%d", i))
		mustRun(t, "sample", "--weights", w, "--heads", fmt.Sprint(c.Heads), "--sampler", "ddpm", "--steps", "4", "--num", "2",
			"--method", "fora", "--param", "N=2", "--out-dir", sd)
		ext := ".safetensors"
		if c.InChannels == 1 || c.InChannels == 3 {
			ext = ".png"
		}
		if _, err := os.Stat(filepath.Join(runDir(t, sd, "fora-"), "000001"+ext)); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}
