package experiments

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
)

// siteFiles points the shipped experiments' environment variables at placeholder files.
func siteFiles(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sd-vae-ft-ema"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"DiT-XL-2-256x256.pt", "pt_inception.pth", "VIRTUAL_imagenet256_labeled.npz", "sd-vae-ft-ema/diffusion_pytorch_model.safetensors",
		"PixArt-XL-2-256x256.pth", "COCO_caption_prompts_30k.txt", "coco30k_t5.safetensors", "coco30k_ref.npz",
		"v1-5-pruned-emaonly.safetensors", "coco30k_sd15_context.safetensors", "imagenet_prompts.txt", "imagenet_sd15_context.safetensors", "imagenet50k_ref.npz"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CACHEBENCH_WEIGHTS", dir)
	t.Setenv("CACHEBENCH_INCEPTION", filepath.Join(dir, "pt_inception.pth"))
	t.Setenv("CACHEBENCH_REFS", dir)
	t.Setenv("CACHEBENCH_COCO", dir)
	t.Setenv("CACHEBENCH_IMAGENET", dir)
}

// Every shipped experiment validates with its files present, and as a smoke test without them.
func TestShippedExperiments(t *testing.T) {
	want := map[string][]string{
		"toca_dit_ddim50.toml":       {"none", "deltadit N=3", "fora N=3", "toca N=3 ratio=0.07 scheduler=ToCa-ddim50 soft_fresh_weight=0.25"},
		"toca_dit_ddpm250.toml":      {"none", "fora N=3", "fora N=4", "fora N=5", "toca N=3 ratio=0.07 scheduler=ToCa-ddpm250 soft_fresh_weight=0.25", "toca N=4 ratio=0.07 scheduler=ToCa-ddpm250 soft_fresh_weight=0.25", "toca N=5 ratio=0.07 scheduler=ToCa-ddpm250 soft_fresh_weight=0.25"},
		"taylorseer_dit_ddim50.toml": {"none", "fora N=3", "fora N=5", "duca N=3 ratio=0.05", "duca N=5 ratio=0.05", "taylorseer N=3 order=3", "taylorseer N=5 order=3", "taylorseer N=4 order=4"},
		"duca_dit_ddim50.toml":       {"none", "duca N=3 ratio=0.05 score=attention", "duca N=3 ratio=0.05 score=vnorm", "duca N=3 ratio=0.05 score=random", "taylorseer N=3 order=1", "fora N=3", "toca N=3 ratio=0.07 scheduler=ToCa-ddim50"},
		"toca_pixart_coco30k.toml":   {"none", "fora N=3 ratio=0", "toca N=3 ratio=0.3", "toca_r60 N=3 ratio=0.4", "taylorseer N=3 order=2"},
		"duca_pixart_coco30k.toml":   {"none", "duca N=3 ratio=0.75", "duca_r30 N=3 ratio=0.3", "toca N=3 ratio=0.3"},
		"dato_sd15_coco30k.toml":     {"none", "deepcache N=3 branch=0", "tomesd ratio=0.5", "dato strategy=released"},
		"dato_sd15_imagenet.toml":    {"none", "deepcache N=3 branch=0", "tomesd ratio=0.5", "dato strategy=released"},
	}
	files, _ := filepath.Glob("*.toml")
	// default*.toml are the embedded default: its files ship in the repository and its paths are
	// relative to the repository root, where `make bench` runs it (TestDefaultExperiment).
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasPrefix(f, "default") })
	if len(files) != len(want) {
		t.Errorf("shipped experiments %v, want %d", files, len(want))
	}
	t.Run("smoke", func(t *testing.T) {
		siteFiles(t) // a prompted model needs its captions even with random weights
		for _, f := range files {
			e, err := Load(f, Overrides{Samples: 8, RandomWeights: true, NoMetrics: true})
			if err != nil {
				t.Fatalf("%s as a smoke test: %v", f, err)
			}
			if e.Sampling.Samples != 8 || e.Model.Weights != "" || e.Model.VAE != "" || e.Metrics != nil {
				t.Errorf("%s: overrides not applied: %+v", f, e.Sampling)
			}
		}
	})
	siteFiles(t)
	for _, f := range files {
		e, err := Load(f, Overrides{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var labels []string
		for _, p := range e.Points() {
			labels = append(labels, p.Label())
		}
		if strings.Join(labels, "|") != strings.Join(want[f], "|") {
			t.Errorf("%s points:\n%s\nwant\n%s", f, strings.Join(labels, "\n"), strings.Join(want[f], "\n"))
		}
		if f == "toca_dit_ddim50.toml" {
			var fids []float64
			for _, p := range e.Points() {
				if p.Paper == nil {
					t.Fatalf("%s: %s has no published numbers", f, p.Label())
				}
				fids = append(fids, p.Paper.Values["fid"])
			}
			if !slices.Equal(fids, []float64{2.43, 3.75, 3.88, 3.04}) {
				t.Errorf("%s: published FIDs %v", f, fids)
			}
		}
		if e.Model.Family == FamilyUNet {
			if e.Sampling.CFG != 7.5 || e.Sampling.Sampler != "plms" || e.Sampling.Steps != "50" || e.Sampling.Guide != GuideAll || e.Model.Latent != 64 ||
				e.Model.Preset != UNetPreset || e.Model.VAE == "" || e.Prompts == nil || e.Prompts.Features == "" || e.Metrics == nil {
				t.Errorf("%s: protocol %+v %+v %+v", f, e.Sampling, e.Model, e.Prompts)
			}
			if n := e.Sampling.Samples; n != map[string]int{"dato_sd15_coco30k.toml": 30000, "dato_sd15_imagenet.toml": 50000}[f] {
				t.Errorf("%s: %d samples", f, n)
			}
			continue
		}
		if e.Model.Family == FamilyPixArt {
			if e.Sampling.Samples != 30000 || e.Sampling.CFG != 4.5 || e.Sampling.Sampler != "dpmpp" || e.Sampling.Steps != "20" || e.Prompts == nil || e.Metrics == nil {
				t.Errorf("%s: protocol %+v %+v", f, e.Sampling, e.Prompts)
			}
			continue
		}
		if e.Sampling.Samples != 50000 || e.Sampling.CFG != 1.5 || e.Model.Preset != "DiT-XL/2" || e.Metrics == nil || e.Sampling.Guide != GuideDiT ||
			!strings.HasSuffix(e.Model.VAE, "sd-vae-ft-ema/diffusion_pytorch_model.safetensors") {
			t.Errorf("%s: protocol %+v %+v", f, e.Sampling, e.Model)
		}
	}
}

// A malformed file reports every problem at once, each at its line.
func TestMalformed(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "malformed.toml"), Overrides{})
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []struct {
		line        int
		field, text string
	}{
		{2, "outputs", `"everything"`},
		{3, "colour", "unknown key"},
		{7, "model.weights", "does not exist"},
		{8, "model.heads", "contradicts preset DiT-XL/2"},
		{11, "sampling.sampler", `"euler"`},
		{12, "sampling.steps", "5000"},
		{13, "sampling.cfg", "want a number, got a string"},
		{14, "sampling.samples", "positive"},
		{15, "sampling.batch", "want an integer, got a float"},
		{16, "sampling.labels", "5000 is not a class in [0, 1000)"},
		{18, "methods.tocca", `unknown method "tocca"`},
		{22, "methods.toca.N", "element 1: bad value"},
		{22, "methods.toca.N", `element 2: want a number, got the string "four"`},
		{23, "methods.toca.ratio", "empty list"},
		{24, "methods.toca.speed", `no parameter "speed"`},
		{27, "methods.fora.N", "want an integer, got the float 3.5"},
		{31, "methods.fora_points.points", `point 1: method fora has no parameter "M"`},
		{33, "metrics", "missing metrics.weights"},
		{33, "metrics", "missing metrics.reference"},
		{34, "metrics.extractor", `"clip"`},
		{35, "metrics.names", "precision needs reference features"},
		{35, "metrics.names", `unknown metric "ssim"`},
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if p.Line == w.line && p.Field == w.field && strings.Contains(p.Msg, w.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing testdata/malformed.toml:%d: %s: ...%s...", w.line, w.field, w.text)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
	if !strings.HasPrefix(probs[0].String(), filepath.Join("testdata", "malformed.toml")+":2: outputs: ") {
		t.Errorf("format: %s", probs[0])
	}
}

const base = `
[model]
arch = { input_size = 8, patch_size = 2, in_channels = 4, hidden = 32, depth = 2, heads = 2, num_classes = 10 }
[sampling]
sampler = "ddim"
steps = 10
samples = 4
`

// Grids, explicit points and the fewer-steps baseline expand in file order.
func TestPoints(t *testing.T) {
	e, err := Parse("x.toml", []byte(base+`
[methods.toca]
ratio = [0.05, 0.1]
N = [2, 3]
mode = "clean"
[methods.taylorseer]
order = 2
points = [{ N = 2 }, { N = 3 }]
[methods.half]
method = "steps"
steps = 5
`), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range e.Points() {
		got = append(got, p.Label()+" @"+p.Steps)
	}
	want := []string{"toca ratio=0.05 N=2 mode=clean @10", "toca ratio=0.05 N=3 mode=clean @10", "toca ratio=0.1 N=2 mode=clean @10",
		"toca ratio=0.1 N=3 mode=clean @10", "taylorseer order=2 N=2 @10", "taylorseer order=2 N=3 @10", "half steps=5 @5"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("points:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Each snippet is wrong in one way and says so, at the right place.
func TestProblems(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"syntax", base + "[methods.none\n", "TOML syntax: expected '.' or ']' to end table name"},
		{"no methods", base, "missing [methods.NAME]"},
		{"duplicate point", base + "[methods.fora]\nN = 3\n[methods.fora3]\nmethod = \"fora\"\nN = [3]\n", `x.toml:10: methods.fora3: point "fora3 N=3" is the same configuration as "fora N=3"`},
		{"defaults collide", base + "[methods.toca]\n[methods.toca2]\nmethod = \"toca\"\nN = 3\n", "same configuration"},
		{"grid repeat", base + "[methods.fora]\nN = [3, 3]\n", "element 1 repeats the value 3"},
		{"axis and point", base + "[methods.fora]\nN = [3]\npoints = [{ N = 2 }]\n", "N is also given outside points"},
		{"list in point", base + "[methods.fora]\npoints = [{ N = [2, 3] }]\n", "want one value per point"},
		{"nested list", base + "[methods.fora]\nN = [[2]]\n", "element 0: want a number or a list of them, got an array"},
		{"enum as number", base + "[methods.toca]\nscheduler = 3\n", "want one of ToCa-ddim50"},
		{"method rejects", base + "[methods.deltadit]\nboundary = 50\n", "methods.deltadit: point deltadit boundary=50"},
		{"unknown env", "output = \"${CACHEBENCH_NO_SUCH_VAR}/x\"\n" + base + "[methods.none]\n", "CACHEBENCH_NO_SUCH_VAR, which is not set"},
		{"arch and preset", strings.Replace(base, "[model]\n", "[model]\npreset = \"DiT-S/2\"\n", 1) + "[methods.none]\n", "not both"},
		{"weights no heads", "[model]\nweights = \"x.toml\"\n[sampling]\nsampler = \"ddim\"\nsteps = 10\nsamples = 4\n[methods.none]\n", "model.heads is required"},
		{"paper on a grid", base + "[methods.fora]\nN = [2, 3]\npaper = { fid = 3.0, source = \"x\" }\n", "published numbers belong to one configuration, and this entry has 2"},
		{"paper without source", base + "[methods.fora]\nN = 3\npaper = { fid = 3.0 }\n", "give source"},
		{"paper unknown key", base + "[methods.fora]\nN = 3\npaper = { fidd = 3.0, source = \"x\" }\n", `unknown published quantity "fidd"`},
		{"cfg nan", strings.Replace(base, "[sampling]\n", "[sampling]\ncfg = nan\n", 1) + "[methods.none]\n", "sampling.cfg: NaN: want a finite number"},
		{"more steps", base + "[methods.steps]\nsteps = 100\n", "100 steps is not fewer than sampling.steps"},
		{"vae missing", strings.Replace(base, "[model]\n", "[model]\nvae = \"no-such-vae.safetensors\"\n", 1) + "[methods.none]\n", "model.vae: no-such-vae.safetensors does not exist"},
		{"vae batch without vae", strings.Replace(base, "[model]\n", "[model]\nvae_batch = 4\n", 1) + "[methods.none]\n", "with model.vae"},
		{"arch missing key", strings.Replace(base, "depth = 2, ", "", 1) + "[methods.none]\n", "missing model.arch.depth"},
		{"label range", base + "labels = [3, 10]\n[methods.none]\n", "element 1 = 10 is not a class in [0, 10)"},
		{"prompts", strings.Replace(base, "samples = 4\n", "samples = 4\nprompts = \"coco.txt\"\n", 1) + "[methods.none]\n", "section of their own"},
		{"audit without record", "audit = 2\n" + base + "[methods.none]\n", `set record = "light"`},
		{"method as number", base + "[methods.x]\nmethod = 3\n", "want a string, got an integer"},
		{"methods not tables", base + "[methods]\nfora = 3\n", "methods.fora: want a table, got an integer"},
	} {
		_, err := Parse("x.toml", []byte(c.src), Overrides{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ...%s...", c.name, err, c.want)
		}
	}
}

// The embedded default validates from the repository root with its shipped assets.
func TestDefaultExperiment(t *testing.T) {
	t.Chdir("..")
	e, err := Load("experiments/default.toml", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, p := range e.Points() {
		labels = append(labels, p.Label())
	}
	want := "none|steps steps=20|fora N=2|fora N=3|fora N=4|deltadit N=4 blocks=4" +
		"|toca N=3 ratio=0.07 scheduler=ToCa-ddim50|toca N=4 ratio=0.07 scheduler=ToCa-ddim50|toca N=5 ratio=0.07 scheduler=ToCa-ddim50" +
		"|duca N=3 ratio=0.05|duca N=4 ratio=0.05|duca N=5 ratio=0.05|taylorseer N=3 order=2|taylorseer N=5 order=2" +
		"|teacache thresh=0.019134|teacache_per_sample thresh=0.019134 decide=per-sample|fbcache thresh=0.085772|dbcache Fn=1 Bn=1 max_warmup_steps=2 thresh=0.30371|magcache thresh=0.13184"
	if got := strings.Join(labels, "|"); got != want {
		t.Errorf("points\n%s\nwant\n%s", got, want)
	}
	// Every method of the registry that plans a class-conditional DiT is in the default (the
	// PixArt-α variants need cross-attention; the UNet methods a UNet).
	in := map[string]bool{}
	for _, p := range e.Points() {
		in[p.Method] = true
	}
	for _, name := range methods.Names() {
		info, _ := methods.Lookup(name)
		if !info.FitsLayout(hook.Layout{}) || strings.HasSuffix(name, "-pixart") {
			continue
		}
		if !in[name] {
			t.Errorf("method %s plans a DiT but is not in experiments/default.toml", name)
		}
	}
	if e.Metrics == nil || e.Metrics.Extractor != "fmnist" || e.Sampling.Samples != 500 {
		t.Errorf("metrics %+v, samples %d", e.Metrics, e.Sampling.Samples)
	}
	p, err := Load("experiments/default_pixart.toml", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	labels = nil
	for _, pt := range p.Points() {
		labels = append(labels, pt.Label())
	}
	want = "none|steps steps=10|fora N=3 ratio=0|toca N=3 ratio=0.3|toca N=5 ratio=0.3|duca N=3 ratio=0.3|duca N=3 ratio=0.75|taylorseer N=3 order=2"
	if got := strings.Join(labels, "|"); got != want {
		t.Errorf("text-to-image points\n%s\nwant\n%s", got, want)
	}
	if p.Model.Family != FamilyPixArt || p.Prompts == nil || p.Prompts.Encoder != "fmnist-tiny" || p.Sampling.Sampler != "dpmpp" || p.Metrics == nil {
		t.Errorf("text-to-image default: %+v %+v %+v", p.Model, p.Prompts, p.Sampling)
	}
	// The UNet half's weights are trained by tools/train_unet.py; until they ship, the file is
	// validated without them (as merge --metrics reads it).
	_, noWeights := os.Stat("assets/fmnist_unet.safetensors")
	u, err := Load("experiments/default_unet.toml", Overrides{MetricsOnly: noWeights != nil})
	if err != nil {
		t.Fatal(err)
	}
	labels = nil
	for _, pt := range u.Points() {
		labels = append(labels, pt.Label()+"@"+pt.Steps)
	}
	want = "none@20|steps steps=10@10|deepcache N=3 branch=0@20|deepcache N=5 branch=0@20|tomesd ratio=0.5@20" +
		"|dato_uniform strategy=uniform N=3 ratio=0.4@20|dato strategy=released@20"
	if got := strings.Join(labels, "|"); got != want {
		t.Errorf("UNet points\n%s\nwant\n%s", got, want)
	}
	if u.Model.Family != FamilyUNet || u.Model.Latent != 16 || u.Model.Decoder != "depth-to-space-2" || u.Model.Heads != 4 || u.Prompts == nil ||
		u.Prompts.Encoder != "fmnist-tiny" || u.Sampling.Sampler != "plms" || u.Sampling.CFG != 7.5 || u.Sampling.Samples != 200 || u.Sampling.Batch != 25 ||
		u.Metrics == nil || u.Metrics.Extractor != "fmnist" || u.Record != "light" {
		t.Errorf("UNet default: %+v %+v %+v", u.Model, u.Prompts, u.Sampling)
	}
}

// unetBase is a valid UNet experiment on the golden tiny UNet; each TestUNetProblems case breaks it.
const unetBase = `
[model]
family = "unet"
weights = "../testdata/sd-unet/weights.safetensors"
heads = 4
latent = 16
decoder = "depth-to-space-2"
[prompts]
file = "../assets/fmnist_prompts.txt"
encoder = "fmnist-tiny"
[sampling]
sampler = "plms"
steps = 4
cfg = 7.5
samples = 2
[methods.none]
`

// The UNet family: PLMS only (and only for it), its methods only, one decoder, a latent side, and
// no step statistics under PLMS; each mistake is one problem at its key.
func TestUNetProblems(t *testing.T) {
	e, err := Parse("u.toml", []byte(unetBase+"[methods.dato]\nstrategy = \"uniform\"\n"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Sampling.Guide != GuideAll || e.Model.Latent != 16 || e.Model.Heads != 4 || e.Model.Decoder != "depth-to-space-2" {
		t.Errorf("parsed %+v %+v", e.Model, e.Sampling)
	}
	// ldm's DDIM on Stable Diffusion's schedule guides every ε channel too.
	if d, err := Parse("u.toml", []byte(strings.Replace(unetBase, `sampler = "plms"`, `sampler = "ddim"`, 1)), Overrides{}); err != nil || d.Sampling.Guide != GuideAll {
		t.Errorf("ddim on the UNet: %v", err)
	}
	for _, c := range []struct{ name, src, want string }{
		{"fora", unetBase + "[methods.fora]\nN = 3\n", "methods.fora: method fora does not apply to Stable Diffusion's UNet (model.family = \"unet\"); the methods for this model are dato, deepcache, none, steps, tomesd"},
		{"ddpm", strings.Replace(unetBase, `sampler = "plms"`, `sampler = "ddpm"`, 1), `sampling.sampler: "ddpm": model.family unet samples with plms or ddim`},
		{"ddim steps", strings.Replace(strings.Replace(unetBase, `sampler = "plms"`, `sampler = "ddim"`, 1), "steps = 4", "steps = 999", 1), "DDIM: PLMS with 999 steps"},
		{"respaced", strings.Replace(unetBase, "steps = 4", `steps = "ddim4"`, 1), "plain step count"},
		{"plms steps", strings.Replace(unetBase, "steps = 4", "steps = 3", 1), "the last timestep would be 1000"},
		{"fewer plms steps", unetBase + "[methods.steps]\nsteps = 3\n", "point steps steps=3: PLMS with 3 steps"},
		{"guide", strings.Replace(unetBase, "cfg = 7.5", "cfg = 7.5\nguide = \"dit\"", 1), "sampler plms guides every ε channel"},
		{"no latent", strings.Replace(unetBase, "latent = 16\n", "", 1), "give model.latent"},
		{"latent and size", strings.Replace(unetBase, "latent = 16\n", "latent = 16\nimage_size = 64\n", 1), "16 contradicts image_size 64"},
		{"decoder", strings.Replace(unetBase, `"depth-to-space-2"`, `"pixel-shuffle"`, 1), `model.decoder: "pixel-shuffle": the fixed decoders are depth-to-space-2`},
		{"decoder and vae", strings.Replace(unetBase, "heads = 4\n", "heads = 4\nvae = \"../testdata/sd-unet/weights.safetensors\"\n", 1), "give model.vae or model.decoder, not both"},
		{"preset", strings.Replace(unetBase, "heads = 4\n", "heads = 4\npreset = \"SD-v2\"\n", 1), `"SD-v2": the UNet knows only SD-v1`},
		{"no prompts", unetBase[:strings.Index(unetBase, "[prompts]")] + unetBase[strings.Index(unetBase, "[sampling]"):], "model.family unet samples from prompts"},
		{"calibration", strings.Replace(unetBase, "heads = 4\n", "heads = 4\ncalibration = \"x.json\"\n", 1), "the UNet's methods read none"},
		{"random weights", unetBase, "--random-weights needs model.preset"},
		{"plms for DiT", strings.Replace(base, `sampler = "ddim"`, `sampler = "plms"`, 1) + "[methods.none]\n", "PLMS samples Stable Diffusion's UNet"},
		{"deepcache for DiT", base + "[methods.deepcache]\n", "method deepcache does not apply to the transformer stack of model.family dit"},
	} {
		o := Overrides{RandomWeights: c.name == "random weights"}
		_, err := Parse("u.toml", []byte(c.src), o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ...%s...", c.name, err, c.want)
		}
	}
}
