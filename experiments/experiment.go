// Package experiments reads experiment files: TOML descriptions of a sweep (model, sampler,
// class set, methods with parameter grids, metrics, recording level, output folder). A file is
// validated as a whole, so that every problem is reported at once with its file and line, and
// expanded into the points the harness runs. README.md beside this file documents the schema.
package experiments

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/pixart"
)

// What is kept of every sample's file besides its database row (outputs = ...).
const (
	// OutputsKeep keeps every sample's file (PNG, or safetensors for latents).
	OutputsKeep = "keep"
	// OutputsHash writes each file only to hash it, then deletes it (large sweeps).
	OutputsHash = "hash"
)

// RecordLevels are the step-statistics recording levels (record = ...), as harness.ParseLevel reads them.
var RecordLevels = []string{"off", "light", "full"}

// Guidance channel choices of sampling.guide.
const (
	// GuideDiT guides ε channels 0–2, as DiT's sample.py.
	GuideDiT = "dit"
	// GuideAll guides every ε channel, as diffusers.
	GuideAll = "all"
)

// Experiment is a validated experiment file.
type Experiment struct {
	noCalibration bool // Overrides.NoCalibration

	Path        string // the file it was read from
	Name        string // name, default the file's base name without extension
	Description string
	Output      string // folder of the results database and the samples
	Outputs     string // OutputsKeep or OutputsHash
	Record      string // step statistics: one of RecordLevels
	Audit       int    // images per batch audited for cache error (with record light or full)
	Model       Model
	Prompts     *Prompts // the captions of a text-conditioned model ([prompts]); nil = class labels
	Sampling    Sampling
	Methods     []MethodEntry // in file order
	Metrics     *Metrics      // nil when the file has no [metrics] (or --no-metrics)
	Notes       []string      // things worth telling the user that are not errors
}

// Model families.
const (
	FamilyDiT    = "dit"
	FamilyPixArt = "pixart"
	// FamilyUNet is Stable Diffusion v1's UNet (models/unet), sampled with PLMS from prompts.
	FamilyUNet = "unet"
)

// UNetPreset names Stable Diffusion v1's UNet (v1-inference.yaml; unet.SDv1): with weights it is
// checked against them, without them (or with --random-weights) it gets random weights.
const UNetPreset = "SD-v1"

// Decoders are the fixed latent decoders [model] decoder names (runner.DecoderByName): the
// embedded Fashion-MNIST UNet's latent is the 2×2 space-to-depth of its 32×32 image.
var Decoders = []string{"depth-to-space-2"}

// decoderFactor is how many pixels a latent pixel spans per side under a decoder: the VAE's 8, or
// the space-to-depth factor.
func decoderFactor(decoder string) int {
	if decoder == "depth-to-space-2" {
		return 2
	}
	return 8
}

// Prompted reports whether a family samples from prompts ([prompts]).
func Prompted(family string) bool { return family == FamilyPixArt || family == FamilyUNet }

// Prompts are the captions a text-conditioned model samples: sample i gets prompt i mod P.
type Prompts struct {
	File     string // one caption per line
	Features string // precomputed caption features (captions.Open; T5-XXL for PixArt-α)
	Encoder  string // or a built-in encoder of the file's captions ("fmnist-tiny")
}

// Model says which network to load.
type Model struct {
	Family    string      // FamilyDiT, FamilyPixArt or FamilyUNet
	Preset    string      // named architecture, e.g. "DiT-XL/2" ("" = none)
	ImageSize int         // image size in pixels for the preset (latent = size/8)
	Weights   string      // checkpoint path ("" = random weights, seed 0)
	Heads     int         // attention heads (0 = from the preset or arch)
	Arch      *dit.Config // a custom random-weights architecture ([model.arch]); nil = none
	Backend   string      // GoMLX backend configuration ("" = the command line's or the default)
	VAE       string      // AutoencoderKL checkpoint that decodes the latents into images ("" = none)
	VAEBatch  int         // images per decoder pass (0 = the sampling batch)
	// Decoder is a fixed latent decoder instead of a VAE (one of Decoders; "" = none).
	Decoder string
	// Latent is the side of the UNet's square latent (family unet).
	Latent int
	// Calibration is the calibration every configuration of a method that reads one gets,
	// unless its entry names its own (nil = none).
	Calibration *Calibration
}

// Config is the architecture the model section describes, when it can be known without
// loading the weights (a preset or an arch); ok is false for weights given with heads only.
func (m Model) Config() (c dit.Config, ok bool) {
	switch {
	case m.Family != FamilyDiT:
		return dit.Config{}, false
	case m.Arch != nil:
		return *m.Arch, true
	case m.Preset != "":
		c, err := dit.Preset(m.Preset, m.ImageSize)
		return c, err == nil
	}
	return dit.Config{}, false
}

// Sampling is the sampler and the sample set every configuration shares.
type Sampling struct {
	Sampler string  // ddim, ddpm or dpmpp
	Steps   string  // respacing spec: "50", "ddim50", "10,15,25" (dpmpp: a plain count)
	CFG     float64 // guidance scale (≤ 1: off)
	Guide   string  // GuideDiT or GuideAll (dpmpp: GuideAll only)
	Samples int     // number of samples per configuration
	Seed    int64   // sample i's noise and label depend on (seed, i) only
	Batch   int     // samples per model call (changes no result)
	Labels  []int64 // class labels cycled over the samples; nil = drawn uniformly from (seed, i)
}

// MethodEntry is one [methods.NAME] table: a method with a grid of parameters and/or
// explicit points.
type MethodEntry struct {
	Name   string              // the table's name
	Method string              // registered method name (default: Name)
	Line   int                 // where the entry starts
	Axes   []Axis              // grid axes in file order (a scalar is a one-value axis)
	Points []map[string]string // explicit points (nil = one empty point)
	Paper  *Published          // the published numbers of the entry's one configuration (nil = none)
	// Calibration is the entry's own calibration file (nil = the model's, if the method reads one).
	Calibration *Calibration
}

// Published is what a paper reports for one configuration, shown beside the measured values.
type Published struct {
	Values map[string]float64 // metric names (fid, sfid, is, precision, recall, ...), flops_speedup, latency_speedup
	Source string             // where the numbers are printed, e.g. "ToCa (ICLR 2025), Table 1"
}

// publishedKeys are the quantities a paper entry may give.
var publishedKeys = []string{"fid", "sfid", "is", "precision", "recall", "kid", "clip_score", "flops_speedup", "latency_speedup"}

// Axis is one parameter of a grid with its values, as methods.Info.Parse takes them.
type Axis struct {
	Param  string
	Values []string
}

// Metrics are the metrics computed from every configuration's samples.
type Metrics struct {
	Extractor       string // feature network: "inception" or "fmnist"
	Weights         string // its weights file
	Reference       string // reference statistics (.npz: mu, sigma[, mu_s, sigma_s])
	ReferenceImages string // reference images for precision, recall and KID ("" = none)
	// Names are the metrics to store, among fid, sfid, is, precision, recall, kid, class_acc (does
	// the sample show its class, by the extractor's classifier), psnr_vs_none and ssim_vs_none
	// (paired fidelity to the none configuration's sample from the same noise).
	Names []string
}

// Overrides change a loaded experiment for a smoke test or a cluster job; zero values change nothing.
type Overrides struct {
	Samples       int    // number of samples per configuration
	Batch         int    // samples per model call
	Output        string // output folder
	RandomWeights bool   // ignore model.weights (and model.vae: latents are stored) and use random weights (needs a preset or arch)
	NoMetrics     bool   // drop the [metrics] section (and the checks of its files)
	NoCalibration bool   // read no calibration file (runbench calibrate writes them, so stale ones must not stop it)
	MetricsOnly   bool   // only [metrics] will be used (runbench merge --metrics): model.weights need not exist here
}

// Problem is one thing wrong with an experiment file.
type Problem struct {
	File  string
	Line  int    // 0 when unknown
	Field string // dotted key, e.g. methods.toca.N ("" for the whole file)
	Msg   string
}

// String formats the problem as file:line: field: message.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in an experiment file, one per line when printed.
type Problems []Problem

// Error lists the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, overrides and validates an experiment file. Its error, when not a read error, is
// Problems: every problem of the file.
func Load(path string, o Overrides) (*Experiment, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("experiment %s: %w", path, err)
	}
	return Parse(path, src, o)
}

// Parse validates the text of an experiment file (path names it in problems).
func Parse(path string, src []byte, o Overrides) (*Experiment, error) {
	r, top, err := newReader(path, src)
	if err != nil {
		return nil, err
	}
	e := &Experiment{Path: path}
	doc := r.newTable("", 0, top)
	e.read(doc, o)
	if len(r.probs) > 0 {
		sort.SliceStable(r.probs, func(i, j int) bool { return r.probs[i].Line < r.probs[j].Line })
		return nil, r.probs
	}
	return e, nil
}

func (e *Experiment) read(doc *table, o Overrides) {
	e.noCalibration = o.NoCalibration
	base := strings.TrimSuffix(filepath.Base(e.Path), filepath.Ext(e.Path))
	e.Name = base
	if s, ok := doc.str("name"); ok {
		if s == "" {
			doc.errf("name", "want a non-empty name")
		}
		e.Name = s
	}
	e.Description, _ = doc.str("description")
	e.Output = filepath.Join("results", e.Name)
	if s, ok := doc.pathValue("output"); ok {
		e.Output = s
	}
	if o.Output != "" {
		e.Output = o.Output
	}
	e.Outputs = OutputsKeep
	if s, ok := doc.str("outputs"); ok {
		switch s {
		case OutputsKeep, OutputsHash:
			e.Outputs = s
		default:
			doc.errf("outputs", "%q: want %q (keep every sample's file) or %q (keep only its hash)", s, OutputsKeep, OutputsHash)
		}
	}
	e.Record = "off"
	if s, ok := doc.str("record"); ok {
		if !slices.Contains(RecordLevels, s) {
			doc.errf("record", "%q: want off, light (per-step dynamics and cache error per batch) or full (also per sample)", s)
		}
		e.Record = s
	}
	if n, ok := doc.integer("audit"); ok {
		if n < 0 || n > 1<<20 {
			doc.errf("audit", "want a number of images ≥ 0, got %d", n)
		}
		if e.Record == "off" && n > 0 {
			doc.errf("audit", "auditing cache error records step statistics: set record = \"light\" or \"full\"")
		}
		e.Audit = int(n)
	}
	if m := doc.sub("model"); m != nil {
		e.readModel(m, o)
	} else if !doc.has("model") {
		doc.errf("", "missing [model] section (preset, weights, heads)")
	}
	if p := doc.sub("prompts"); p != nil {
		e.readPrompts(p)
	}
	switch {
	case Prompted(e.Model.Family) && e.Prompts == nil && doc.has("model"):
		doc.errf("", "model.family %s samples from prompts: add a [prompts] section (file, and features or encoder)", e.Model.Family)
	case !Prompted(e.Model.Family) && e.Prompts != nil:
		doc.errf("prompts", "prompts condition a text-to-image model (model.family = \"pixart\" or \"unet\"); DiT samples class labels")
	}
	if s := doc.sub("sampling"); s != nil {
		e.readSampling(s, o)
	} else if !doc.has("sampling") {
		doc.errf("", "missing [sampling] section (sampler, steps, samples)")
	}
	if e.Prompts != nil && e.Sampling.Labels != nil {
		doc.errf("sampling", "labels: a prompted model's sample i takes prompt i mod P; give no labels")
	}
	if m := doc.sub("model"); m != nil {
		e.Model.Calibration = e.readCalibration(m, e.Sampling.Steps)
	}
	if m := doc.sub("methods"); m != nil {
		e.readMethods(m)
	} else if !doc.has("methods") {
		doc.errf("", "missing [methods.NAME] sections: give at least one method")
	}
	if m := doc.sub("metrics"); m != nil && !o.NoMetrics {
		e.readMetrics(m)
	}
	doc.unknown("name", "description", "output", "outputs", "record", "audit", "model", "prompts", "sampling", "methods", "metrics")
}

func (e *Experiment) readModel(t *table, o Overrides) {
	m := &e.Model
	m.Family = FamilyDiT
	if f, ok := t.str("family"); ok {
		if f != FamilyDiT && f != FamilyPixArt && f != FamilyUNet {
			t.errf("family", "%q: want %q, %q or %q (Stable Diffusion v1's UNet)", f, FamilyDiT, FamilyPixArt, FamilyUNet)
		}
		m.Family = f
	}
	if m.Family == FamilyUNet {
		m.Preset, _ = t.str("preset")
		e.readUNetModel(t, o)
		return
	}
	m.Preset, _ = t.str("preset")
	m.ImageSize = 256
	if n, ok := t.integer("image_size"); ok {
		if m.Preset == "" {
			t.errf("image_size", "only meaningful with model.preset")
		}
		m.ImageSize = int(n)
	}
	if m.Family == FamilyPixArt {
		e.readPixArtModel(t, o)
		return
	}
	if m.Preset != "" {
		if _, err := dit.Preset(m.Preset, m.ImageSize); err != nil {
			key := "preset"
			if strings.Contains(err.Error(), "image size") {
				key = "image_size"
			}
			t.errf(key, "%v", err)
		}
	}
	hasWeights := t.has("weights")
	if o.RandomWeights {
		t.used["weights"] = true
	} else if w, ok := t.pathValue("weights"); ok {
		m.Weights = w
		st, err := os.Stat(w)
		switch {
		case o.MetricsOnly: // the model is not built
		case err != nil:
			t.errf("weights", "%s does not exist or cannot be read (give the checkpoint path, or --random-weights for a smoke test)", w)
		case st.IsDir():
			t.errf("weights", "%s is a folder, want a checkpoint file (.safetensors or .pt)", w)
		}
	}
	if n, ok := t.integer("heads"); ok {
		if n <= 0 {
			t.errf("heads", "want a positive number of attention heads, got %d", n)
		}
		m.Heads = int(n)
	}
	if a := t.sub("arch"); a != nil {
		m.Arch = readArch(a)
	}
	m.Backend, _ = t.str("backend")
	if o.RandomWeights {
		t.used["vae"], t.used["vae_batch"] = true, true
	} else if v, ok := t.pathValue("vae"); ok {
		m.VAE = v
		st, err := os.Stat(v)
		switch {
		case o.MetricsOnly:
		case err != nil:
			t.errf("vae", "%s does not exist or cannot be read (give an AutoencoderKL checkpoint: sd-vae-ft-ema/mse, LDM or diffusers keys)", v)
		case st.IsDir():
			t.errf("vae", "%s is a folder, want a checkpoint file (.safetensors, .pt or .bin)", v)
		}
	}
	if n, ok := t.integer("vae_batch"); ok && !o.RandomWeights {
		if n < 0 || m.VAE == "" {
			t.errf("vae_batch", "want images per decoder pass ≥ 0, with model.vae (got %d)", n)
		}
		m.VAEBatch = int(n)
	}
	t.used["calibration"] = true // read once [sampling] is known
	t.unknown("family", "preset", "image_size", "weights", "heads", "arch", "backend", "vae", "vae_batch", "calibration")

	switch {
	case m.Arch != nil && m.Preset != "":
		t.errf("arch", "give model.preset or model.arch, not both")
	case m.Arch != nil && hasWeights && !o.RandomWeights:
		t.errf("arch", "model.arch describes a random-weights model; with model.weights give heads (or a preset) instead")
	case m.Arch == nil && m.Preset == "" && !hasWeights:
		t.errf("", "give model.preset (with weights, or random weights without), model.weights with model.heads, or model.arch")
	case m.Arch == nil && m.Preset == "" && o.RandomWeights:
		t.errf("weights", "--random-weights needs model.preset or model.arch to know the architecture")
	case m.Arch == nil && m.Preset == "" && m.Heads == 0:
		t.errf("weights", "model.heads is required with model.weights (it cannot be read off the weights), or give model.preset")
	}
	if c, err := dit.Preset(m.Preset, m.ImageSize); m.Preset != "" && err == nil && m.Heads != 0 && m.Heads != c.Heads {
		t.errf("heads", "%d contradicts preset %s (%d heads)", m.Heads, m.Preset, c.Heads)
	}
	if m.Arch != nil && m.Heads != 0 && m.Heads != m.Arch.Heads {
		t.errf("heads", "%d contradicts model.arch.heads %d", m.Heads, m.Arch.Heads)
	}
}

// readArch reads [model.arch], a custom DiT for random weights (tests and smoke runs).
func readArch(t *table) *dit.Config {
	c := &dit.Config{MLPRatio: 4, LearnSigma: true}
	ok := true
	for _, f := range []struct {
		key string
		dst *int
	}{{"input_size", &c.InputSize}, {"patch_size", &c.PatchSize}, {"in_channels", &c.InChannels}, {"hidden", &c.Hidden},
		{"depth", &c.Depth}, {"heads", &c.Heads}, {"num_classes", &c.NumClasses}} {
		n, has := t.integer(f.key)
		switch {
		case !t.has(f.key):
			t.errf("", "missing %s.%s (an integer)", t.path, f.key)
			ok = false
		case !has:
			ok = false
		case n <= 0 || n > 1<<20:
			t.errf(f.key, "want a positive integer, got %d", n)
			ok = false
		default:
			*f.dst = int(n)
		}
	}
	if v, has := t.number("mlp_ratio"); has {
		c.MLPRatio = v
	}
	if v, has := t.boolean("learn_sigma"); has {
		c.LearnSigma = v
	}
	t.unknown("input_size", "patch_size", "in_channels", "hidden", "depth", "heads", "num_classes", "mlp_ratio", "learn_sigma")
	if !ok {
		return nil
	}
	if err := c.Validate(); err != nil {
		t.errf("", "%v", err)
		return nil
	}
	return c
}

func (e *Experiment) readSampling(t *table, o Overrides) {
	s := &e.Sampling
	unet := e.Model.Family == FamilyUNet
	if v, ok := t.str("sampler"); ok {
		k, err := diffusion.ParseKind(v)
		switch {
		case unet && k != diffusion.PLMS && k != diffusion.DDIM:
			// DDPM and DPM-Solver++ run DiT's and PixArt-α's schedules, not Stable Diffusion's.
			t.errf("sampler", "%q: model.family unet samples with plms or ddim (ldm's, η = 0, on Stable Diffusion's schedule; the DeepCache, ToMeSD and DaTo references use PLMS)", v)
		case err != nil:
			t.errf("sampler", "%q: want ddim, ddpm or dpmpp (or plms for model.family = \"unet\")", v)
		case k == diffusion.PLMS && !unet:
			t.errf("sampler", "%q: PLMS samples Stable Diffusion's UNet (model.family = \"unet\"); want ddim, ddpm or dpmpp", v)
		}
		s.Sampler = v
	} else if !t.has("sampler") {
		t.errf("", "missing sampling.sampler (ddim, ddpm or dpmpp; plms for model.family unet)")
	}
	dpm := s.Sampler == string(diffusion.DPMSolverPP)
	ldm := unet // ldm's PLMS or DDIM: a plain count, every ε channel guided
	plms := s.Sampler == string(diffusion.PLMS) || ldm
	if v, ok := t.raw("steps"); ok {
		switch n := v.(type) {
		case int64:
			s.Steps = fmt.Sprint(n)
		case string:
			s.Steps = n
		default:
			t.errf("steps", "want a step count (50) or a respacing string (\"ddim50\", \"10,15,25\"), got %s", typeName(v))
		}
		if s.Steps != "" {
			if _, err := diffusion.ParseDPMSolver(s.Steps); dpm && err != nil {
				t.errf("steps", "%v", err)
			} else if err := checkLDMSteps(s.Sampler, s.Steps); ldm && err != nil {
				t.errf("steps", "%v", err)
			} else if err := checkSteps(s.Steps); err != nil {
				t.errf("steps", "%v", err)
			}
		}
	} else {
		t.errf("", "missing sampling.steps (e.g. 50)")
	}
	s.CFG = 1.5
	if v, ok := t.number("cfg"); ok {
		if v < 0 {
			t.errf("cfg", "%g: want a guidance scale ≥ 0 (≤ 1 turns guidance off)", v)
		}
		s.CFG = v
	}
	s.Guide = GuideDiT
	if dpm || plms {
		s.Guide = GuideAll // PixArt-α's DPM-Solver wrapper and ldm's PLMS guide every ε channel
	}
	if g, ok := t.str("guide"); ok {
		switch {
		case g != GuideDiT && g != GuideAll:
			t.errf("guide", "%q: want %q (ε channels 0-2, DiT's sample.py) or %q (every channel, diffusers)", g, GuideDiT, GuideAll)
		case (dpm || plms) && g != GuideAll:
			t.errf("guide", "%q: sampler %s guides every ε channel (%q) here; %q is DiT's DDPM/DDIM convention", g, s.Sampler, GuideAll, GuideDiT)
		}
		s.Guide = g
	}
	if n, ok := t.integer("samples"); ok {
		if n <= 0 || n > 1<<31 {
			t.errf("samples", "want a positive number of samples, got %d", n)
		}
		s.Samples = int(n)
	} else if !t.has("samples") && o.Samples == 0 {
		t.errf("", "missing sampling.samples (e.g. 50000)")
	}
	if o.Samples > 0 {
		s.Samples = o.Samples
	}
	s.Seed, _ = t.integer("seed")
	s.Batch = 8
	if n, ok := t.integer("batch"); ok {
		if n <= 0 || n > 1<<20 {
			t.errf("batch", "want a positive batch size, got %d", n)
		}
		s.Batch = int(n)
	}
	if o.Batch > 0 {
		s.Batch = o.Batch
	}
	if v, ok := t.raw("labels"); ok {
		s.Labels = readLabels(t, v, e.Model)
	}
	if t.has("prompts") {
		t.used["prompts"] = true
		t.errf("prompts", "prompts are a section of their own, [prompts] (file, features or encoder), for a text-to-image model (model.family = \"pixart\" or \"unet\")")
	}
	t.unknown("sampler", "steps", "cfg", "guide", "samples", "seed", "batch", "labels")
}

// readLabels reads sampling.labels: "random" (nil) or a list of class indices.
func readLabels(t *table, v any, m Model) []int64 {
	classes := 0
	if c, ok := m.Config(); ok {
		classes = c.NumClasses
	}
	switch l := v.(type) {
	case string:
		if l != "random" {
			t.errf("labels", "%q: want \"random\" (drawn from (seed, index)) or a list of class indices", l)
		}
		return nil
	case []any:
		if len(l) == 0 {
			t.errf("labels", "empty list: want class indices, or \"random\"")
			return nil
		}
		out := make([]int64, 0, len(l))
		for i, x := range l {
			n, ok := x.(int64)
			switch {
			case !ok:
				t.errf("labels", "element %d is %s, want a class index", i, typeName(x))
			case n < 0 || (classes > 0 && n >= int64(classes)):
				t.errf("labels", "element %d = %d is not a class in [0, %d)", i, n, classes)
			default:
				out = append(out, n)
			}
		}
		return out
	}
	t.errf("labels", "want \"random\" or a list of class indices, got %s", typeName(v))
	return nil
}

func (e *Experiment) readMetrics(t *table) {
	m := &Metrics{}
	if v, ok := t.str("extractor"); ok {
		if v != "inception" && v != "fmnist" {
			t.errf("extractor", "%q: want inception (pytorch-fid's FID Inception-v3) or fmnist (the Fashion-MNIST classifier of the embedded default)", v)
		}
		m.Extractor = v
	} else if !t.has("extractor") {
		t.errf("", "missing metrics.extractor (inception or fmnist)")
	}
	file := func(key string, required bool, what string) string {
		if !t.has(key) {
			if required {
				t.errf("", "missing metrics.%s (%s)", key, what)
			}
			return ""
		}
		p, ok := t.pathValue(key)
		if !ok {
			return ""
		}
		if _, err := os.Stat(p); err != nil {
			t.errf(key, "%s does not exist or cannot be read (want %s; or run with --no-metrics)", p, what)
		}
		return p
	}
	if m.Extractor == "fmnist" {
		m.Weights = file("weights", true, "the Fashion-MNIST classifier's weights (assets/fmnist_classifier.safetensors)")
	} else {
		m.Weights = file("weights", true, "Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
	}
	m.Reference = file("reference", true, "reference statistics .npz with mu, sigma")
	m.ReferenceImages = file("reference_images", false, "reference images, a folder or an .npz with arr_0")
	known := map[string]bool{"fid": true, "sfid": true, "is": true, "precision": true, "recall": true, "kid": true,
		"class_acc": true, "psnr_vs_none": true, "ssim_vs_none": true}
	if v, ok := t.raw("names"); ok {
		l, isList := v.([]any)
		if !isList || len(l) == 0 {
			t.errf("names", "want a non-empty list of metric names (fid, sfid, is, precision, recall, kid)")
		}
		seen := map[string]bool{}
		for i, x := range l {
			s, isStr := x.(string)
			switch {
			case !isStr:
				t.errf("names", "element %d is %s, want a metric name", i, typeName(x))
			case !known[s]:
				t.errf("names", "unknown metric %q (known: fid, sfid, is, precision, recall, kid, class_acc, psnr_vs_none, ssim_vs_none)", s)
			case s == "sfid" && m.Extractor == "fmnist":
				t.errf("names", "sfid needs Inception's spatial features; the fmnist extractor has none")
			case seen[s]:
				t.errf("names", "%q is listed twice", s)
			case (s == "precision" || s == "recall" || s == "kid") && !t.has("reference_images"):
				t.errf("names", "%s needs reference features: give metrics.reference_images", s)
			default:
				seen[s] = true
				m.Names = append(m.Names, s)
			}
		}
	} else if m.Extractor == "fmnist" {
		m.Names = []string{"fid", "is", "class_acc", "psnr_vs_none", "ssim_vs_none"}
	} else {
		m.Names = []string{"fid", "sfid", "is"}
		if t.has("reference_images") {
			m.Names = append(m.Names, "precision", "recall", "kid")
		}
	}
	t.unknown("extractor", "weights", "reference", "reference_images", "names")
	e.Metrics = m
}

// readPixArtModel reads [model] for family pixart: the preset PixArt-XL/2 at an image size
// (random weights), or weights (heads: PixArt-XL's 16 unless given), a backend and a VAE.
func (e *Experiment) readPixArtModel(t *table, o Overrides) {
	m := &e.Model
	if m.Preset != "" && m.Preset != pixart.PresetName {
		t.errf("preset", "%q: PixArt-α knows only %s", m.Preset, pixart.PresetName)
	}
	if m.Preset != "" {
		if _, err := pixart.Preset(m.ImageSize); err != nil {
			t.errf("image_size", "%v", err)
		}
	}
	if o.RandomWeights {
		t.used["weights"], t.used["vae"], t.used["vae_batch"] = true, true, true
		if m.Preset == "" {
			t.errf("weights", "--random-weights needs model.preset to know the architecture")
		}
	} else {
		if w, ok := t.pathValue("weights"); ok {
			m.Weights = w
			if st, err := os.Stat(w); !o.MetricsOnly && (err != nil || st.IsDir()) {
				t.errf("weights", "%s is not a readable checkpoint file (PixArt-α .pth/.safetensors, official or diffusers keys)", w)
			}
		}
		if v, ok := t.pathValue("vae"); ok {
			m.VAE = v
			if st, err := os.Stat(v); !o.MetricsOnly && (err != nil || st.IsDir()) {
				t.errf("vae", "%s is not a readable AutoencoderKL checkpoint file", v)
			}
		}
		if n, ok := t.integer("vae_batch"); ok {
			if n < 0 || m.VAE == "" {
				t.errf("vae_batch", "want images per decoder pass ≥ 0, with model.vae (got %d)", n)
			}
			m.VAEBatch = int(n)
		}
	}
	if n, ok := t.integer("heads"); ok {
		if n <= 0 {
			t.errf("heads", "want a positive number of attention heads, got %d", n)
		}
		m.Heads = int(n)
	}
	m.Backend, _ = t.str("backend")
	if m.Preset == "" && m.Weights == "" && !o.RandomWeights {
		t.errf("", "give model.weights (a PixArt-α checkpoint) or model.preset = %q (random weights)", pixart.PresetName)
	}
	t.used["calibration"] = true // read once [sampling] is known
	t.unknown("family", "preset", "image_size", "weights", "heads", "backend", "vae", "vae_batch", "calibration")
}

// readPrompts reads [prompts]: the caption file and its features (or a built-in encoder).
func (e *Experiment) readPrompts(t *table) {
	p := &Prompts{}
	if f, ok := t.pathValue("file"); ok {
		p.File = f
		if _, err := os.Stat(f); err != nil {
			t.errf("file", "%s does not exist or cannot be read (one caption per line)", f)
		}
	} else {
		t.errf("file", "missing: the prompt file, one caption per line")
	}
	if f, ok := t.pathValue("features"); ok {
		p.Features = f
		if _, err := os.Stat(f); err != nil {
			what := "caption features: safetensors/npz with caption_feature and attention_mask, or a folder of PixArt's per-caption .npz"
			if e.Model.Family == FamilyUNet {
				what = "text contexts: safetensors with context [P+1, L, context_dim], the prompts then the empty prompt's, as runbench encode-text writes"
			}
			t.errf("features", "%s does not exist or cannot be read (%s)", f, what)
		}
	}
	p.Encoder, _ = t.str("encoder")
	switch {
	case p.Encoder != "" && p.Encoder != "fmnist-tiny":
		t.errf("encoder", "%q: the built-in encoder is \"fmnist-tiny\" (Fashion-MNIST captions)", p.Encoder)
	case (p.Features == "") == (p.Encoder == ""):
		t.errf("features", "give prompts.features (precomputed: T5-XXL for PixArt-α, CLIP's text contexts for the UNet) or prompts.encoder, one of them")
	}
	t.unknown("file", "features", "encoder")
	e.Prompts = p
}

// checkLDMSteps validates the UNet's plain step count as ldm's PLMS or DDIM will read it.
func checkLDMSteps(sampler, spec string) error {
	n, err := strconv.Atoi(spec)
	if err != nil {
		return fmt.Errorf("%q: the UNet's sampler %s takes a plain step count (50), not a respacing spec", spec, sampler)
	}
	if sampler == string(diffusion.DDIM) {
		_, err = diffusion.NewLDMDDIM(n)
	} else {
		_, err = diffusion.NewPLMS(n)
	}
	return err
}

// readUNetModel reads [model] for family unet: weights (an LDM UNet safetensors or a whole SD
// checkpoint) or preset SD-v1 (random weights), heads (SD v1's 8 unless given), the latent side
// (latent, or image_size over the decoder's factor), and how latents become images: a VAE, or a
// fixed decoder.
func (e *Experiment) readUNetModel(t *table, o Overrides) {
	m := &e.Model
	if m.Preset != "" && m.Preset != UNetPreset {
		t.errf("preset", "%q: the UNet knows only %s (Stable Diffusion v1's v1-inference.yaml); other UNets are read off their weights", m.Preset, UNetPreset)
	}
	if o.RandomWeights {
		t.used["weights"], t.used["vae"], t.used["vae_batch"] = true, true, true
		if m.Preset == "" {
			t.errf("weights", "--random-weights needs model.preset = %q to know the architecture", UNetPreset)
		}
	} else {
		if w, ok := t.pathValue("weights"); ok {
			m.Weights = w
			if st, err := os.Stat(w); !o.MetricsOnly && (err != nil || st.IsDir()) {
				t.errf("weights", "%s is not a readable checkpoint file (an LDM UNet .safetensors, or a whole Stable Diffusion checkpoint .ckpt/.safetensors)", w)
			}
		}
		if v, ok := t.pathValue("vae"); ok {
			m.VAE = v
			if st, err := os.Stat(v); !o.MetricsOnly && (err != nil || st.IsDir()) {
				t.errf("vae", "%s is not a readable AutoencoderKL checkpoint file (sd-vae-ft-ema/mse, or the whole SD checkpoint's first_stage_model)", v)
			}
		}
		if n, ok := t.integer("vae_batch"); ok {
			if n < 0 || m.VAE == "" {
				t.errf("vae_batch", "want images per decoder pass ≥ 0, with model.vae (got %d)", n)
			}
			m.VAEBatch = int(n)
		}
	}
	if d, ok := t.str("decoder"); ok {
		if !slices.Contains(Decoders, d) {
			t.errf("decoder", "%q: the fixed decoders are %s (or give model.vae, an AutoencoderKL checkpoint)", d, strings.Join(Decoders, ", "))
		}
		if t.has("vae") && !o.RandomWeights {
			t.errf("decoder", "give model.vae or model.decoder, not both")
		}
		m.Decoder = d
	}
	if n, ok := t.integer("heads"); ok {
		if n <= 0 {
			t.errf("heads", "want a positive number of attention heads, got %d", n)
		}
		if m.Preset == UNetPreset && n != 8 {
			t.errf("heads", "%d contradicts preset %s (8 heads)", n, UNetPreset)
		}
		m.Heads = int(n)
	}
	m.ImageSize = 0
	if n, ok := t.integer("image_size"); ok {
		if n <= 0 {
			t.errf("image_size", "want a positive image size in pixels, got %d", n)
		}
		m.ImageSize = int(n)
	}
	f := decoderFactor(m.Decoder)
	if n, ok := t.integer("latent"); ok {
		switch {
		case n <= 0 || n > 1<<12:
			t.errf("latent", "want the latent's side (64 for SD v1 at 512², 16 for the Fashion-MNIST UNet), got %d", n)
		case m.ImageSize > 0 && m.ImageSize != f*int(n):
			t.errf("latent", "%d contradicts image_size %d (the decoder spans %d pixels per latent pixel: latent %d)", n, m.ImageSize, f, m.ImageSize/f)
		}
		m.Latent = int(n)
	} else if m.ImageSize > 0 {
		if m.ImageSize%f != 0 {
			t.errf("image_size", "%d is not a multiple of %d (the decoder's pixels per latent pixel)", m.ImageSize, f)
		}
		m.Latent = m.ImageSize / f
	} else if !t.has("latent") && !t.has("image_size") {
		t.errf("", "give model.latent (the latent's side: 64 for SD v1 at 512², 16 for the Fashion-MNIST UNet) or model.image_size (pixels: latent = image_size/8 with a VAE)")
	}
	m.Backend, _ = t.str("backend")
	if m.Preset == "" && m.Weights == "" && !o.RandomWeights && !t.has("weights") {
		t.errf("", "give model.weights (a UNet or Stable Diffusion checkpoint) or model.preset = %q (random weights)", UNetPreset)
	}
	if t.has("calibration") {
		t.used["calibration"] = true
		t.errf("calibration", "calibrations are the threshold caches' (DiT), and the UNet's methods read none")
	}
	t.unknown("family", "preset", "image_size", "latent", "weights", "heads", "backend", "vae", "vae_batch", "decoder")
}

// fitsFamily tells whether a method plans a model family: the UNet's methods (deepcache, tomesd,
// dato) plan only the UNet, the caches of the transformer stacks only DiT and PixArt-α; none and
// steps plan every model.
func fitsFamily(info *methods.Info, family string) bool {
	l := hook.Layout{}
	if family == FamilyUNet {
		l.Blocks = []hook.BlockShape{}
	}
	return info.FitsLayout(l)
}

// familyMethods lists the registered methods that plan a family.
func familyMethods(family string) string {
	var out []string
	for _, n := range methods.Names() {
		if info, err := methods.Lookup(n); err == nil && fitsFamily(info, family) {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}
