package runner_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/unet"
	"github.com/cachebench/cachebench/runner"
)

// The depth-to-space decoder is PixelShuffle(2): it inverts tools/train_unet.py's space-to-depth
// latent[c, i, j] = image[0, 2i + c/2, 2j + c%2], image by image.
func TestDepthToSpace(t *testing.T) {
	d := runner.DecoderByName("depth-to-space-2", 4)
	if d == nil || d.ID() != "depth-to-space-2" {
		t.Fatalf("decoder %v", d)
	}
	if c, h, w, err := d.ImageShape(4, 16, 16); err != nil || c != 1 || h != 32 || w != 32 {
		t.Fatalf("image shape %d×%d×%d, %v", c, h, w, err)
	}
	if _, _, _, err := d.ImageShape(3, 16, 16); err == nil {
		t.Error("a 3-channel latent: want an error")
	}
	const n, S = 2, 16
	img := make([]float32, n*32*32)
	for k := range img {
		img[k] = float32(k%977) / 977
	}
	lat := make([]float32, n*4*S*S)
	for b := range n {
		for c := range 4 {
			for i := range S {
				for j := range S {
					lat[b*4*S*S+c*S*S+i*S+j] = img[b*32*32+(2*i+c/2)*32+2*j+c%2]
				}
			}
		}
	}
	got, err := d.Decode(lat, n)
	if err != nil {
		t.Fatal(err)
	}
	for k := range img {
		if got[k] != img[k] {
			t.Fatalf("pixel %d: %v, want %v", k, got[k], img[k])
		}
	}
	if _, err := d.Decode(lat[:len(lat)-4], n); err == nil {
		t.Error("a truncated batch: want an error")
	}
}

// writeContexts writes a context file as runbench encode-text does: context [rows, L, width]
// and tokens [rows, L], the last row the empty prompt's when emptyLast.
func writeContexts(t *testing.T, rows, L, width int, emptyLast bool) string {
	t.Helper()
	ctx := make([]float32, rows*L*width)
	for k := range ctx {
		ctx[k] = float32(k%13) / 13
	}
	tok := make([]int32, rows*L)
	for r := range rows {
		for j := range L {
			tok[r*L+j] = 49407
		}
		tok[r*L] = 49406
		if r < rows-1 || !emptyLast {
			tok[r*L+1] = 320 // a word
		}
	}
	path := filepath.Join(t.TempDir(), "ctx.safetensors")
	err := checkpoint.WriteSafetensors(path, map[string]*checkpoint.Tensor{
		runner.ContextField: checkpoint.NewF32(ctx, rows, L, width), runner.TokensField: checkpoint.NewI32(tok, rows, L)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A context file holds the prompts' contexts then the empty prompt's null context; a file of
// another width, without the null row, or whose last row is not the empty prompt is refused with
// the file, the field and the expectation.
func TestReadUNetContexts(t *testing.T) {
	good := writeContexts(t, 3, 5, 8, true)
	c, err := runner.ReadUNetContexts(good, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	if c.P != 2 || c.L != 5 || len(c.Cond) != 2*5*8 || len(c.Null) != 5*8 || c.Null[0] != float32((2*5*8)%13)/13 || c.ID == "" {
		t.Errorf("contexts P %d L %d cond %d null %d (%v) id %q", c.P, c.L, len(c.Cond), len(c.Null), c.Null[:1], c.ID)
	}
	for _, tc := range []struct {
		name, path string
		prompts    int
		width      int
		want       string
	}{
		{"width", good, 2, 768, "takes context_dim 768"},
		{"no null row", good, 3, 8, "3 rows for 3 prompts"},
		{"count", good, 5, 8, "prompts.file 5 prompts"},
		{"last row not empty", writeContexts(t, 3, 5, 8, false), 2, 8, "empty prompt"},
	} {
		_, err := runner.ReadUNetContexts(tc.path, tc.prompts, tc.width)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "prompts.features: "+tc.path) {
			t.Errorf("%s: %v, want an error naming the file and ...%s...", tc.name, err, tc.want)
		}
	}
}

// unetGolden is the golden tiny UNet with zero contexts for two prompts, as the runner samples it.
type unetGolden struct{ *unet.Denoiser }

func (m unetGolden) Backend() backends.Backend { return m.Model().Backend() }

func loadUNetGolden(t *testing.T) unetGolden {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.Load(b, golden.Path("sd-unet/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	d, err := unet.NewDenoiser(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetContexts(make([]float32, 2*12*32), make([]float32, 12*32)); err != nil {
		t.Fatal(err)
	}
	return unetGolden{d}
}

// A method that does not plan the loaded model is refused before compute, naming the method, the
// model and the methods that apply; the UNet's own methods pass, and the UNet's methods are
// refused on a DiT.
func TestPreflightFits(t *testing.T) {
	m := loadUNetGolden(t)
	item := func(method string, raw map[string]string) runner.SweepItem {
		return runner.SweepItem{Label: method, RawParams: raw, Config: runner.Config{Model: "tiny UNet", Method: method, Sampler: "plms",
			Steps: "4", CFGScale: 7.5, Seed: 1, NumSamples: 2, Backend: "go"}}
	}
	err := runner.Preflight(m, item("fora", map[string]string{"N": "2"}), 2)
	for _, want := range []string{"method fora does not apply to tiny UNet", "Stable Diffusion's UNet", "deepcache", "dato", "tomesd"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fora on the UNet: %v, want ...%s...", err, want)
		}
	}
	for _, ok := range []string{"none", "deepcache", "tomesd", "dato"} {
		if err := runner.Preflight(m, item(ok, nil), 2); err != nil {
			t.Errorf("%s on the UNet: %v", ok, err)
		}
	}
	if err := runner.Preflight(m, item("deepcache", map[string]string{"branch": "3"}), 2); err == nil || !strings.Contains(err.Error(), "branch 3") {
		t.Errorf("a branch past the UNet's input blocks: %v", err)
	}
	b, _ := engine.New("")
	c := dit.Config{InputSize: 8, PatchSize: 2, InChannels: 4, Hidden: 32, Depth: 2, Heads: 2, MLPRatio: 2, NumClasses: 10, LearnSigma: true}
	dm, err := dit.New(b, c, dit.RandomWeights(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	it := item("deepcache", nil)
	it.Config.Sampler, it.Config.Steps = "ddim", "10"
	if err := runner.Preflight(dm, it, 2); err == nil || !strings.Contains(err.Error(), "does not apply") || !strings.Contains(err.Error(), "transformer stack") {
		t.Errorf("deepcache on a DiT: %v", err)
	}
}

// PLMS's dry run plans every model call (steps + 1: the first step calls twice, both planned as
// its first step), and its FLOPs are the UNet counter's sum over those calls; ldm's DDIM makes
// one call per step.
func TestDryRunPLMS(t *testing.T) {
	m := loadUNetGolden(t)
	tr, err := runner.DryRun(m, "plms", "4", "deepcache", map[string]string{"N": "2"}, methods.Env{Rows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Calls) != 5 || tr.NumSteps != 4 {
		t.Fatalf("%d calls of %d steps, want 5 of 4", len(tr.Calls), tr.NumSteps)
	}
	steps := []int{3, 3, 2, 1, 0}
	var sum int64
	for k, c := range tr.Calls {
		if c.Call != k || c.Step != steps[k] {
			t.Errorf("call %d: call %d step %d, want step %d", k, c.Call, c.Step, steps[k])
		}
		sum += c.FLOPs
	}
	none, err := runner.DryRun(m, "plms", "4", "none", nil, methods.Env{Rows: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Calls 0, 2 and 4 are full, 1 and 3 run the shallow branch only.
	full := none.Calls[0].FLOPs
	if sum != tr.TotalFLOPs || tr.Calls[0].FLOPs != full || tr.Calls[2].FLOPs != full || tr.Calls[1].FLOPs >= full/2 || none.TotalFLOPs != 5*full {
		t.Errorf("FLOPs per call %v (none %v), total %d", tr.Calls, none.TotalFLOPs, tr.TotalFLOPs)
	}
	if _, err := runner.DryRun(m, "plms", "ddim50", "none", nil, methods.Env{Rows: 2}); err == nil || !strings.Contains(err.Error(), "plain step count") {
		t.Errorf("a respacing spec for PLMS: %v", err)
	}
	// ldm's DDIM: one call per step, DeepCache's full calls at 0 and 2.
	dd, err := runner.DryRun(m, "ddim", "4", "deepcache", map[string]string{"N": "2"}, methods.Env{Rows: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(dd.Calls) != 4 || dd.Calls[3].Step != 0 || dd.Calls[2].FLOPs != full || dd.TotalFLOPs != 2*full+2*tr.Calls[1].FLOPs {
		t.Errorf("DDIM calls %+v, total %d", dd.Calls, dd.TotalFLOPs)
	}
	if _, err := runner.DryRun(m, "dpmpp", "4", "none", nil, methods.Env{Rows: 2}); err == nil || !strings.Contains(err.Error(), "plms or ddim") {
		t.Errorf("dpmpp on the UNet: %v", err)
	}
}
