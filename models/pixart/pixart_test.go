package pixart

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// loadGolden loads the tiny golden model (testdata/README.md) on the CPU backend.
func loadGolden(t *testing.T) *Model {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b, golden.Path("pixart/weights.safetensors"), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func f32(t *testing.T, f *checkpoint.File, name string) []float32 {
	t.Helper()
	v, err := f.Tensors[name].Float32()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// relErr is max|got − want| / max|want|, the golden README's measure.
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		num = math.Max(num, math.Abs(float64(got[i])-float64(want[i])))
		den = math.Max(den, math.Abs(float64(want[i])))
	}
	return num / den
}

func TestInferConfigGolden(t *testing.T) {
	m := loadGolden(t)
	want := Config{InputSize: 16, PatchSize: 2, InChannels: 4, Hidden: 64, Depth: 4, Heads: 4, MLPRatio: 4,
		CaptionChannels: 32, MaxLength: 12, PredSigma: true, LeweiScale: 1}
	if m.Config != want {
		t.Fatalf("config %+v, want %+v", m.Config, want)
	}
}

// TestForwardGolden compares every named intermediate of the official forward with the
// tolerances of testdata/README.md.
func TestForwardGolden(t *testing.T) {
	m := loadGolden(t)
	g, err := checkpoint.Load(golden.Path("pixart/forward.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tt := f32(t, g, "t")
	ts := make([]float64, len(tt))
	for i, v := range tt {
		ts[i] = float64(v)
	}
	lens, err := g.Tensors["y_lens"].Int64()
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Captions: f32(t, g, "y"), Lengths: make([]int, len(lens))}
	for i, n := range lens {
		in.Lengths[i] = int(n)
	}
	got := map[string][]float32{}
	opt := hook.Options{Probe: func(name string, v *tensors.Tensor) { got[name] = tensors.MustCopyFlatData[float32](v) }}
	out, err := m.ForwardCaptions(f32(t, g, "x"), ts, in, opt)
	if err != nil {
		t.Fatal(err)
	}
	got["out"] = out
	got["block0_cross_in"] = make([]float32, len(got["x_embed"]))
	for i := range got["x_embed"] {
		got["block0_cross_in"][i] = got["x_embed"][i] + got["block0_attn"][i]
	}
	tol := map[string]float64{"t_emb": 5e-5, "t_block": 5e-5, "block0_attn": 5e-5, "block0_mlp": 5e-5}
	for _, name := range []string{"x_embed", "y_proj", "block0_attn_raw", "block0_cross_in", "block0_cross", "block0_mlp_raw",
		"block_0", "block_1", "block_2", "block_3", "final_tokens", "out", "t_emb", "t_block", "block0_attn", "block0_mlp"} {
		want := f32(t, g, name)
		if len(got[name]) != len(want) {
			t.Errorf("%s: %d values, want %d", name, len(got[name]), len(want))
			continue
		}
		limit := 1e-5
		if v, ok := tol[name]; ok {
			limit = v
		}
		if e := relErr(got[name], want); e > limit {
			t.Errorf("%s: relative error %.3g > %g", name, e, limit)
		} else {
			t.Logf("%s: %.3g", name, e)
		}
	}
	want := f32(t, g, "t_freq")
	for i := range want {
		if d := math.Abs(float64(got["t_freq"][i] - want[i])); d > 1e-4 {
			t.Fatalf("t_freq[%d]: |%g − %g| > 1e-4", i, got["t_freq"][i], want[i])
		}
	}
}

// TestEmbeddedGolden checks the shipped Fashion-MNIST PixArt-α (assets/, tools/train_pixart.py)
// against its PyTorch forward: three captions of lengths 5, 1, 9 (padding filled with random
// values that must be ignored), t = 999, 500.5, 3.25.
func TestEmbeddedGolden(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b, "../../assets/fmnist_pixart.safetensors", 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := checkpoint.Load(golden.Path("pixart/fmnist_pixart_golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if m.InChannels != 1 || m.Tokens() != 64 || m.CaptionChannels != 32 || m.MaxLength != 12 || !m.PredSigma {
		t.Fatalf("configuration read off the weights: %s", m.Config)
	}
	mask, err := g.Tensors["mask"].Int64()
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Captions: f32(t, g, "y"), Lengths: make([]int, 3)}
	for r := range 3 {
		for _, v := range mask[r*12 : (r+1)*12] {
			in.Lengths[r] += int(v)
		}
	}
	ts := []float64{}
	for _, v := range f32(t, g, "t") {
		ts = append(ts, float64(v))
	}
	got := map[string][]float32{}
	opt := hook.Options{Probe: func(name string, v *tensors.Tensor) { got[name] = tensors.MustCopyFlatData[float32](v) }}
	if got["out"], err = m.ForwardCaptions(f32(t, g, "x"), ts, in, opt); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"block_0", "block_3", "out"} {
		if e := relErr(got[name], f32(t, g, name)); e > 1e-5 {
			t.Errorf("%s: relative error %.3g > 1e-5", name, e)
		}
	}
}
