package unet_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/unet"
)

// The denoiser's labels pick contexts from its table (P = the shared null), its output is the
// UNet's on those contexts, and it refuses plans it cannot carry out before any compute.
func TestDenoiser(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	g := golden.Open(t, "sd-unet/plms.safetensors")
	cond, uncond := golden.F32(t, g, "cond"), golden.F32(t, g, "uncond")
	x := golden.F32(t, g, "x_T")
	if _, err := unet.NewDenoiser(m, 15); err == nil {
		t.Error("a latent side that is not a multiple of the downscale: want an error")
	}
	d, err := unet.NewDenoiser(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	var _ hook.Model = d
	var _ harness.NullLabeler = d
	if _, err := d.Forward(x, []float64{500, 500}, []int64{0, 1}, hook.Options{}); err == nil {
		t.Error("forward without contexts: want an error")
	}
	per := len(uncond) / 2
	if err := d.SetContexts(cond, uncond[:per]); err != nil {
		t.Fatal(err)
	}
	if s := d.Spec(); s.NumClasses != 2 || s.Channels != 4 || s.Height != 16 || s.LearnSigma || d.NullLabel(1) != 2 {
		t.Errorf("spec %+v, null label %d; want 2 prompts, 4×16×16 ε, null label 2", s, d.NullLabel(1))
	}
	l := d.Layout()
	if l.Depth != len(m.Blocks()) || len(l.Modules) != 3 || len(l.Blocks) != l.Depth {
		t.Errorf("layout of %d blocks (%d shapes) and %d modules; want %d and 3", l.Depth, len(l.Blocks), len(l.Modules), len(m.Blocks()))
	}
	for i, bk := range m.Blocks() {
		if want := map[bool]int{true: 256 / (bk.Factor * bk.Factor)}[bk.Has(unet.LayerAttn)]; l.Blocks[i].Tokens != want {
			t.Errorf("block %s: %d tokens, want %d", bk.Name, l.Blocks[i].Tokens, want)
		}
	}
	xx := append(slices.Clone(x), x[:len(x)/2]...)
	ts := []float64{901, 901, 901}
	got, err := d.Forward(xx, ts, []int64{1, 0, 2}, hook.Options{Plan: hook.FullPlan(l)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := append(append(slices.Clone(cond[per:]), cond[:per]...), uncond[:per]...)
	want, err := m.Forward(xx, ts, ctx, unet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("denoiser output differs from the UNet's on the labels' contexts (rel %.3g)", golden.RelToMax(got, want))
	}
	skip := hook.FullPlan(l)
	skip.Skips = []hook.SpanSkip{{Span: hook.Span{From: 2, To: 4}}}
	mods := hook.FullPlan(l)
	mods.Blocks[3].Modules[0] = hook.ModulePlan{Action: hook.Reuse}
	noMods := hook.FullPlan(l)
	noMods.Blocks[2].Modules[0] = hook.ModulePlan{Action: hook.Prune, Prune: &hook.Pruning{Rule: hook.PruneMerge, K: 1, SX: 2, SY: 2}}
	for name, c := range map[string]struct {
		y   []int64
		opt hook.Options
		msg string
	}{
		"label":   {[]int64{0, 3}, hook.Options{}, "label 3"},
		"skips":   {[]int64{0, 1}, hook.Options{Plan: skip}, "single blocks"},
		"modules": {[]int64{0, 1}, hook.Options{Plan: mods}, "reuse"},
		"no attn": {[]int64{0, 1}, hook.Options{Plan: noMods}, "no token modules"},
		"depth":   {[]int64{0, 1}, hook.Options{Plan: &hook.Plan{}}, "plan has 0 blocks"},
	} {
		if _, err := d.Forward(x, []float64{500, 500}, c.y, c.opt); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one saying %q", name, err, c.msg)
		}
	}
}
