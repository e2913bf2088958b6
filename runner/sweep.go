package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/metrics"
)

// FLOPsConvention says what planned FLOPs count (the ToCa/DuCa counter, as `runbench flops`).
const FLOPsConvention = "transformer blocks only (ToCa/DuCa counter); embedders, final layer, sampler excluded; one image with its CFG row"

// SweepItem is one configuration of a sweep.
type SweepItem struct {
	Label     string            // for people: the method entry and its parameters
	Config    Config            // what the run's hash covers (Backend must be set)
	RawParams map[string]string // the method's parameters as given
	BaseSteps string            // the schedule method none is counted on for the FLOPs speedup
	// CalibrationPath is the calibration file Config.Calibration names ("" = none); the sweep
	// reads it and checks it against the configuration before anything is sampled.
	CalibrationPath string
}

// Arch counts the FLOPs of plans without weights (dit.Config is one).
type Arch interface {
	hook.FLOPsCounter
	Layout() hook.Layout
}

// MetricsSpec is what a sweep's metrics are computed against, from the stored features.
type MetricsSpec struct {
	Names []string          // among fid, sfid, is, precision, recall, kid
	Ref   *metrics.RefStats // reference statistics
	// RefFeatures returns the reference features for precision, recall and KID (nil: none); it
	// is called only when one of those is computed, since extracting them takes a while.
	RefFeatures func() (*metrics.Features, error)
	Reference   string // recorded with every metric (the reference file)
	Resize      string // the extractor's input policy, recorded with every metric
}

// Sweep samples a list of configurations into one database (one shard of each, when sharded).
type Sweep struct {
	Items []SweepItem
	// Arch counts planned FLOPs without the model (nil: the model counts them, and a sweep that
	// needs a count before anything was sampled loads it; Stable Diffusion's UNet knows its blocks
	// only from its weights).
	Arch Arch
	// Load builds the model; it is called once, when the first configuration with missing
	// samples comes up, so a finished sweep (or one that only needs metrics) loads nothing.
	Load func() (Model, error)
	// LoadDecoder builds the VAE decoder of items whose Config.VAE is set, after Load.
	LoadDecoder func() (ImageDecoder, error)
	// Prompts are the captions of items whose Config.Prompts is set (the model's labels index them).
	Prompts        []string
	DecodeBatch    int
	DB             *store.DB
	OutDir         string // samples of a configuration go to OutDir/METHOD-HASH12/
	BatchSize      int
	Shard          Shard
	Record         harness.Level
	Audit          int
	DiscardOutputs bool
	Extractor      metrics.Extractor // with Config.Features set in every item
	Metrics        *MetricsSpec      // nil: no metrics
	GitRev         string
	Progress       func(SweepProgress)
	Log            func(msg string)
}

// SweepProgress is where a sweep stands, for progress bars.
type SweepProgress struct {
	Item, Items       int    // the configuration being sampled (0-based) and how many there are
	Label             string // its label
	Done, Total       int    // its samples done and to do in this invocation
	AllDone, AllTotal int    // the same over the whole sweep
	Start, AllStart   time.Time
}

// ItemResult is what a sweep did for one configuration.
type ItemResult struct {
	Item     SweepItem
	Hash     string
	Run      store.Run
	Done     int // samples generated in this invocation
	Have     int // samples in the database (this shard's range and any other)
	Timing   harness.Timing
	FLOPs    *store.RunFLOPs
	Metrics  []store.Metric
	NoMetric string // why metrics were not computed ("" when computed or not asked for)
}

// ExperimentItems expands an experiment's points into sweep items for a model: model is its
// description, weights its weights hash, backend the backend configuration in force, and
// features the stored features (nil: none).
// prompts identifies the experiment's captions ("" for class labels).
func ExperimentItems(e *experiments.Experiment, model, weights, backend, vae, prompts string, features *FeatureSpec) []SweepItem {
	guide := harness.DefaultGuideChannels
	if e.Sampling.Guide == experiments.GuideAll {
		guide = diffusion.GuidanceAll
	}
	var out []SweepItem
	for _, p := range e.Points() {
		it := SweepItem{Label: p.Label(), RawParams: p.Params, BaseSteps: e.Sampling.Steps,
			Config: Config{Model: model, Weights: weights, Method: p.Method, Sampler: e.Sampling.Sampler, Steps: p.Steps,
				CFGScale: e.Sampling.CFG, Guide: guide, Seed: e.Sampling.Seed, NumSamples: e.Sampling.Samples,
				Labels: e.Sampling.Labels, Backend: backend, Features: features, VAE: vae, Prompts: prompts}}
		if c := p.Calibration; c != nil {
			// The experiment read the file, so its content hashes; failing that, the path
			// keeps the configuration apart, and the sweep reports the problem before sampling.
			it.CalibrationPath = c.Path
			if it.Config.Calibration, _ = CalibrationID(c.Calibration); it.Config.Calibration == "" {
				it.Config.Calibration = "file:" + c.Path
			}
		}
		out = append(out, it)
	}
	return out
}

// promptsFor is the sweep's prompts for a configuration that names them, else nil.
func promptsFor(c Config, p []string) []string {
	if c.Prompts == "" {
		return nil
	}
	return p
}

// decoderFor is the sweep's decoder for a configuration that decodes, else nil.
func decoderFor(c Config, d ImageDecoder) ImageDecoder {
	if c.VAE == "" {
		return nil
	}
	return d
}

// ItemHash is the config hash a sweep item's run is stored under.
func ItemHash(it SweepItem) (string, error) {
	_, cj, err := ResolveConfig(it.Config, it.RawParams)
	if err != nil {
		return "", fmt.Errorf("%s: %w", it.Label, err)
	}
	return store.ConfigHash(cj), nil
}

// RunSweep samples every missing sample of every configuration (skipping finished ones,
// resuming interrupted ones at their first missing batch), then stores each run's planned FLOPs
// and, for every run that holds all its samples, its metrics from the stored features. When ctx
// ends it stops after the batch in flight and returns what it did with ctx's error.
func RunSweep(ctx context.Context, s Sweep) ([]ItemResult, error) {
	if s.BatchSize <= 0 {
		return nil, fmt.Errorf("sweep: batch size %d must be positive", s.BatchSize)
	}
	w := &sweepRun{s: s}
	if err := w.survey(); err != nil {
		return nil, err
	}
	if err := w.sampleMissing(ctx); err != nil {
		return w.res, err
	}
	for k := range w.res {
		if err := w.finishItem(&w.res[k]); err != nil {
			return w.res, err
		}
	}
	if s.Metrics != nil && (slices.Contains(s.Metrics.Names, "psnr_vs_none") || slices.Contains(s.Metrics.Names, "ssim_vs_none")) {
		pairFidelity(s, s.Items, w.res, w.logf)
	}
	return w.res, nil
}

// sweepRun is a sweep under way: its results so far, and what sampling keeps across items.
type sweepRun struct {
	s        Sweep
	res      []ItemResult // one per item
	missing  []int        // per item, the samples of this shard's range the database lacks
	allTotal int          // the sum of missing: this invocation's work
	allDone  int          // samples generated so far
	allStart time.Time    // when sampling began
	model    Model        // loaded with the first item that has samples to make
	decoder  ImageDecoder // loaded with the first item that decodes
	// calibrations are the calibration files of the items, by path, read by survey.
	calibrations map[string]*CalibrationFile
}

// logf passes a message to the sweep's log, if it has one.
func (w *sweepRun) logf(format string, args ...any) {
	if w.s.Log != nil {
		w.s.Log(fmt.Sprintf(format, args...))
	}
}

// survey checks every item and counts its missing samples before anything is sampled, so a bad
// item fails the sweep at once and progress knows the whole sweep's work.
func (w *sweepRun) survey() error {
	w.res = make([]ItemResult, len(w.s.Items))
	w.missing = make([]int, len(w.s.Items))
	seen := map[string]string{}
	for k, it := range w.s.Items {
		h, err := w.itemHash(it, seen)
		if err != nil {
			return err
		}
		w.res[k] = ItemResult{Item: it, Hash: h}
		if err := w.countMissing(k); err != nil {
			return err
		}
	}
	return nil
}

// itemHash checks an item and returns its config hash, refusing a configuration seen before
// (seen maps the hashes so far to their labels).
func (w *sweepRun) itemHash(it SweepItem, seen map[string]string) (string, error) {
	if it.Config.Backend == "" {
		return "", fmt.Errorf("sweep: %s: the backend configuration must be set (it is part of the config hash)", it.Label)
	}
	if (it.Config.Features != nil) != (w.s.Extractor != nil) {
		return "", fmt.Errorf("sweep: %s: stored features and the extractor go together", it.Label)
	}
	if err := w.checkCalibration(it); err != nil {
		return "", fmt.Errorf("sweep: %s: %w", it.Label, err)
	}
	h, err := ItemHash(it)
	if err != nil {
		return "", fmt.Errorf("sweep: %w", err)
	}
	if first, dup := seen[h]; dup {
		return "", fmt.Errorf("sweep: %s and %s are the same configuration", first, it.Label)
	}
	seen[h] = it.Label
	return h, nil
}

// checkCalibration reads an item's calibration file (once per file) and refuses it when it is not
// what the configuration names or was measured on another model, weights, sampler, steps or CFG.
func (w *sweepRun) checkCalibration(it SweepItem) error {
	if it.CalibrationPath == "" {
		return checkJobCalibration(it.Config, nil)
	}
	f, ok := w.calibrations[it.CalibrationPath]
	if !ok {
		var err error
		if f, err = ReadCalibrationFile(it.CalibrationPath); err != nil {
			return err
		}
		if w.calibrations == nil {
			w.calibrations = map[string]*CalibrationFile{}
		}
		w.calibrations[it.CalibrationPath] = f
	}
	return checkJobCalibration(it.Config, f)
}

// countMissing finds item k's stored run, if any, and counts the samples of this shard's range
// it still lacks.
func (w *sweepRun) countMissing(k int) error {
	it := w.s.Items[k]
	lo, hi := w.s.Shard.Range(it.Config.NumSamples)
	w.missing[k] = hi - lo
	run, err := w.s.DB.RunByHash(w.res[k].Hash)
	if errors.Is(err, store.ErrNotFound) {
		w.allTotal += w.missing[k]
		return nil
	}
	if err != nil {
		return err
	}
	w.res[k].Run = run
	have, err := w.s.DB.SampleIndices(run.ID)
	if err != nil {
		return err
	}
	for _, i := range have {
		if i >= lo && i < hi {
			w.missing[k]--
		}
	}
	w.res[k].Have = len(have)
	w.allTotal += w.missing[k]
	return nil
}

// sampleMissing samples the items with missing samples in order, loading the model (and the
// decoder) only when the first one comes up.
func (w *sweepRun) sampleMissing(ctx context.Context) error {
	w.allStart = time.Now()
	for k, it := range w.s.Items {
		if w.missing[k] == 0 {
			continue
		}
		if err := w.load(it); err != nil {
			return err
		}
		if err := w.sampleItem(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// load builds the model, and the decoder for an item that decodes, unless already built.
func (w *sweepRun) load(it SweepItem) error {
	if err := w.loadModel(); err != nil {
		return err
	}
	if it.Config.VAE != "" && w.decoder == nil {
		if w.s.LoadDecoder == nil {
			return fmt.Errorf("%s: the configuration decodes with %s, and the sweep has no decoder", it.Label, it.Config.VAE)
		}
		var err error
		if w.decoder, err = w.s.LoadDecoder(); err != nil {
			return err
		}
	}
	return nil
}

// loadModel builds the model once and, before anything is sampled, builds every configuration
// with samples to make for it (preflight), so a method that does not apply to the model, or a
// setting the model cannot take, is one error at load time and not one after the configurations
// before it ran.
func (w *sweepRun) loadModel() error {
	if w.model != nil {
		return nil
	}
	if w.s.Load == nil {
		return fmt.Errorf("sweep: no model loader")
	}
	m, err := w.s.Load()
	if err != nil {
		return err
	}
	for k, it := range w.s.Items {
		if w.missing != nil && w.missing[k] == 0 {
			continue
		}
		if err := Preflight(m, it, w.s.BatchSize); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	w.model = m
	return nil
}

// Preflight builds a configuration's method once for a loaded model, as its first batch will:
// a method that does not plan this kind of model (the transformer stacks' caches on the UNet, the
// UNet's on a DiT) is refused naming the method, the model and the methods that do apply.
func Preflight(m Model, it SweepItem, batch int) error {
	info, err := methods.Lookup(it.Config.Method)
	if err != nil {
		return fmt.Errorf("%s: %w", it.Label, err)
	}
	l := m.Layout()
	if !info.FitsLayout(l) {
		var fit []string
		for _, n := range methods.Names() {
			if i, _ := methods.Lookup(n); i.FitsLayout(l) {
				fit = append(fit, n)
			}
		}
		kind := "a uniform transformer stack (DiT, PixArt-α)"
		if l.Blocks != nil {
			kind = "Stable Diffusion's UNet"
		}
		return fmt.Errorf("%s: method %s does not apply to %s (%s); the methods for this model are %s",
			it.Label, it.Config.Method, it.Config.Model, kind, strings.Join(fit, ", "))
	}
	smp, err := samplerFor(it.Config, IsUNet(m))
	if err != nil {
		return fmt.Errorf("%s: %w", it.Label, err)
	}
	n := max(1, min(batch, it.Config.NumSamples))
	rows := n
	if it.Config.CFGScale > 1 {
		rows *= 2
	}
	env := methods.Env{Layout: l, Steps: smp.steps(), Rows: rows, Seed: it.Config.Seed, Samples: make([]int, n)}
	if it.CalibrationPath != "" {
		f, err := ReadCalibrationFile(it.CalibrationPath)
		if err != nil {
			return fmt.Errorf("%s: %w", it.Label, err)
		}
		env.Calibration = &f.Calibration
	}
	if _, _, err := methods.New(it.Config.Method, it.RawParams, env); err != nil {
		return fmt.Errorf("%s on %s: %w", it.Label, it.Config.Model, err)
	}
	return nil
}

// sampleItem runs the job of item k's missing samples, reporting progress over the whole sweep,
// and records what it did in the item's result even when it fails.
func (w *sweepRun) sampleItem(ctx context.Context, k int) error {
	s, it := w.s, w.s.Items[k]
	start := time.Now()
	base := w.allDone
	report := func(done, total int) {
		if s.Progress != nil {
			s.Progress(SweepProgress{Item: k, Items: len(s.Items), Label: it.Label, Done: done, Total: total,
				AllDone: w.allDone, AllTotal: w.allTotal, Start: start, AllStart: w.allStart})
		}
	}
	job := Job{Config: it.Config, RawParams: it.RawParams, Model: w.model, BatchSize: s.BatchSize,
		OutDir: filepath.Join(s.OutDir, fmt.Sprintf("%s-%s", it.Config.Method, w.res[k].Hash[:12])), DB: s.DB, Shard: s.Shard,
		Record: s.Record, Audit: s.Audit, Extractor: s.Extractor, DiscardOutputs: s.DiscardOutputs, GitRev: s.GitRev,
		Decoder: decoderFor(it.Config, w.decoder), DecodeBatch: s.DecodeBatch, Prompts: promptsFor(it.Config, s.Prompts),
		Calibration: w.calibrations[it.CalibrationPath],
		Progress: func(done, total int) {
			w.allDone = base + done
			report(done, total)
		}}
	report(0, w.missing[k])
	jr, err := Run(ctx, job)
	if jr != nil {
		w.res[k].Run, w.res[k].Done, w.res[k].Timing = jr.Run, jr.Done, jr.Timing
	}
	w.allDone = base + w.res[k].Done
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", it.Label, err)
	}
	if have, err := s.DB.SampleIndices(w.res[k].Run.ID); err == nil {
		w.res[k].Have = len(have)
	}
	return nil
}

// finishItem gives a stored run its planned FLOPs and, when asked for, its metrics; an item
// without a run (an empty shard of a tiny run) has nothing stored to finish.
func (w *sweepRun) finishItem(r *ItemResult) error {
	if r.Run.ID == 0 {
		return nil
	}
	if err := w.flops(r); err != nil {
		return err
	}
	if w.s.Metrics != nil {
		w.metrics(r)
	}
	return nil
}

// flops reads the run's planned FLOPs, counting and storing them first when the run has none
// and the sweep knows the architecture.
func (w *sweepRun) flops(r *ItemResult) error {
	f, err := w.s.DB.RunFLOPs(r.Run.ID)
	if err != nil {
		return err
	}
	arch := w.s.Arch
	if arch == nil {
		// The model counts its own FLOPs: load it if nothing was sampled (a stored run without
		// its planned FLOPs).
		if info, err := methods.Lookup(r.Item.Config.Method); f == nil || (err == nil && info.DataDependent) {
			if err := w.loadModel(); err != nil {
				return err
			}
			arch = w.model
		}
	}
	if info, err := methods.Lookup(r.Item.Config.Method); err == nil && info.DataDependent {
		// A threshold cache's FLOPs depend on the data: only what the batches executed counts
		// (batches.flops; reports read them there), against none's plan. Nothing is stored in
		// run_flops, which holds planned counts.
		r.FLOPs = nil
		flops, counted, err := w.s.DB.ExecutedFLOPs(r.Run.ID)
		if err != nil || counted == 0 || arch == nil {
			return err
		}
		base := r.Item
		base.Config.Method, base.RawParams, base.CalibrationPath = "none", nil, ""
		pf, err := PlanFLOPs(arch, base)
		if err != nil {
			return fmt.Errorf("%s: FLOPs of none: %w", r.Item.Label, err)
		}
		per := flops / int64(counted)
		r.FLOPs = &store.RunFLOPs{PerImage: per, BasePerImage: pf.BasePerImage, Speedup: float64(pf.BasePerImage) / float64(max(per, 1)),
			RowsPerImage: pf.RowsPerImage, Convention: FLOPsConvention + "; executed (the method decides from the data)"}
		return nil
	}
	if f == nil && arch != nil {
		pf, err := PlanFLOPs(arch, r.Item)
		if err != nil {
			return fmt.Errorf("%s: FLOPs: %w", r.Item.Label, err)
		}
		if err := w.s.DB.PutRunFLOPs(r.Run.ID, pf); err != nil {
			return err
		}
		f = &pf
	}
	r.FLOPs = f
	return nil
}

// metrics takes the run's metrics from the database when all are stored, else computes them from
// the stored features; a run that cannot have them says why in NoMetric instead of failing the sweep.
func (w *sweepRun) metrics(r *ItemResult) {
	c := r.Item.Config
	switch {
	case r.Have < c.NumSamples:
		r.NoMetric = fmt.Sprintf("%d of %d samples in this file: metrics come after `runbench merge`", r.Have, c.NumSamples)
	case c.Features == nil:
		r.NoMetric = "no stored features"
	default:
		if ms, ok := storedMetrics(w.s.DB, r.Run.ID, *w.s.Metrics, c.Features.Extractor); ok {
			r.Metrics = ms
			return
		}
		ms, err := EvaluateRun(w.s.DB, r.Run, *w.s.Metrics)
		if err != nil {
			r.NoMetric = err.Error()
			w.logf("%s: metrics not computed: %v", r.Item.Label, err)
		}
		r.Metrics = ms
	}
}

// isPaired tells the metrics computed against the none configuration rather than a reference.
func isPaired(name string) bool { return name == "psnr_vs_none" || name == "ssim_vs_none" }

// pairFidelity stores, for every finished configuration, the mean PSNR and SSIM of its samples
// against the none configuration's samples from the same noise (the sweep's uncached run).
func pairFidelity(s Sweep, items []SweepItem, res []ItemResult, logf func(string, ...any)) {
	base := -1
	for k, it := range items {
		if it.Config.Method == "none" && res[k].Have == it.Config.NumSamples {
			base = k
		}
	}
	if base < 0 {
		logf("paired fidelity skipped: the sweep has no finished none configuration")
		return
	}
	for k, it := range items {
		if res[k].Have < it.Config.NumSamples {
			continue
		}
		ms, err := storePaired(s.DB, res[k].Run, res[base].Run)
		if err != nil {
			logf("%s: paired fidelity not computed: %v", it.Label, err)
			continue
		}
		res[k].Metrics = append(res[k].Metrics, ms...)
	}
}

// storePaired computes a run's mean PSNR and SSIM against the none run from the same noise and
// stores them as psnr_vs_none and ssim_vs_none.
func storePaired(db *store.DB, run, base store.Run) ([]store.Metric, error) {
	psnr, ssim, n, err := PairedFidelity(db, run, base)
	if err != nil {
		return nil, err
	}
	// The base run by its configuration hash: a row id differs between databases (merges).
	ref := fmt.Sprintf("none run %s (same noise)", base.ConfigHash[:12])
	ms := []store.Metric{{Name: "psnr_vs_none", Value: psnr, N: n, Reference: ref}, {Name: "ssim_vs_none", Value: ssim, N: n, Reference: ref}}
	return ms, db.PutMetrics(run.ID, ms)
}

// pairKeys are what a run is paired on: its configuration without the method's settings (with
// and without the step count), and its method.
type pairKeys struct{ withSteps, noSteps, method string }

// pairKeysOf computes a configuration's pairKeys. The calibration a method reads is a method
// setting: it changes no sample's noise or label.
func pairKeysOf(configJSON string) (pairKeys, error) {
	var c Config
	if err := json.Unmarshal([]byte(configJSON), &c); err != nil {
		return pairKeys{}, err
	}
	k := pairKeys{method: c.Method}
	c.Method, c.Params, c.Features, c.Calibration = "", nil, nil, ""
	a, err := json.Marshal(c)
	if err != nil {
		return k, err
	}
	c.Steps = ""
	b, err := json.Marshal(c)
	k.withSteps, k.noSteps = string(a), string(b)
	return k, err
}

// PairRuns computes PSNR/SSIM against `none` for runs outside a sweep (e.g. after a merge): every
// complete run is paired with a complete `none` run whose configuration differs only in the
// method and its parameters (same weights, sampler, guidance, seed, samples, labels: the same
// noise and label per sample), preferring one with the same steps (a fewer-steps run is paired
// with the none run of another step count, as in a sweep). Runs without a partner are logged.
func PairRuns(db *store.DB, runs []store.Run, logf func(string, ...any)) error {
	key := func(r store.Run) (pairKeys, error) {
		k, err := pairKeysOf(r.ConfigJSON)
		if err != nil {
			return k, fmt.Errorf("run %d: config: %w", r.ID, err)
		}
		return k, nil
	}
	base := map[string]store.Run{}
	ks := make([]pairKeys, len(runs))
	for i, r := range runs {
		k, err := key(r)
		if err != nil {
			return err
		}
		ks[i] = k
		if k.method == "none" && r.Status == store.StatusDone {
			base[k.withSteps] = r
			if _, ok := base[k.noSteps]; !ok { // first none run (lowest id) of any step count
				base[k.noSteps] = r
			}
		}
	}
	for i, r := range runs {
		if r.Status != store.StatusDone {
			continue
		}
		b, ok := base[ks[i].withSteps]
		if !ok {
			b, ok = base[ks[i].noSteps]
		}
		if !ok {
			logf("run %d (%s): no complete none run with the same sampling: paired fidelity skipped", r.ID, r.Method)
			continue
		}
		ms, err := storePaired(db, r, b)
		if err != nil {
			return fmt.Errorf("run %d: paired fidelity: %w", r.ID, err)
		}
		logf("run %d (%s)  psnr_vs_none %.4f  ssim_vs_none %.4f", r.ID, r.Method, ms[0].Value, ms[1].Value)
	}
	return nil
}

// storedMetrics returns a run's metrics when every one asked for is already stored against the
// same reference and extractor.
func storedMetrics(db *store.DB, runID int64, m MetricsSpec, extractor string) ([]store.Metric, bool) {
	all, err := db.Metrics(runID)
	if err != nil {
		return nil, false
	}
	var out []store.Metric
	for _, name := range m.Names {
		found := false
		name = MetricName(name, extractor)
		for _, x := range all {
			if x.Name == name && (x.Reference == m.Reference || isPaired(name)) && (x.Extractor == extractor || isPaired(name)) {
				out, found = append(out, x), true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return out, true
}

// PlanFLOPs counts a configuration's FLOPs per image from its method's plans (a dry run, no
// network) and its speedup over method none on the item's base schedule.
func PlanFLOPs(arch Arch, it SweepItem) (store.RunFLOPs, error) {
	rows := 1
	if it.Config.CFGScale > 1 {
		rows = 2
	}
	// MagCache's schedule is its calibration's.
	var cal *methods.Calibration
	if it.CalibrationPath != "" {
		f, err := ReadCalibrationFile(it.CalibrationPath)
		if err != nil {
			return store.RunFLOPs{}, err
		}
		cal = &f.Calibration
	}
	count := func(method string, raw map[string]string, steps string) (int64, error) {
		env := methods.Env{Rows: rows, Seed: it.Config.Seed, Samples: []int{0}}
		if method == it.Config.Method {
			env.Calibration = cal
		}
		tr, err := DryRun(arch, it.Config.Sampler, steps, method, raw, env)
		if err != nil {
			return 0, err
		}
		return tr.TotalFLOPs, nil
	}
	f, err := count(it.Config.Method, it.RawParams, it.Config.Steps)
	if err != nil {
		return store.RunFLOPs{}, err
	}
	baseSteps := it.BaseSteps
	if baseSteps == "" {
		baseSteps = it.Config.Steps
	}
	b, err := count("none", nil, baseSteps)
	if err != nil {
		return store.RunFLOPs{}, err
	}
	sp := 0.0
	if f > 0 {
		sp = float64(b) / float64(f)
	}
	return store.RunFLOPs{PerImage: f, BasePerImage: b, Speedup: sp, RowsPerImage: rows, Convention: flopsConvention(it.Config.Sampler)}, nil
}

// flopsConvention is FLOPsConvention, with PLMS's extra call said.
func flopsConvention(sampler string) string {
	if sampler == string(diffusion.PLMS) {
		return FLOPsConvention + "; PLMS: every model call (steps + 1: its first step calls twice)"
	}
	return FLOPsConvention
}

// DryRun replays a method's plans for every model call a sampler makes with the given steps
// (schedules do not depend on the data) and counts their FLOPs with arch: one call per step for
// DDPM, DDIM and DPM-Solver++ (methods.DryRun); on the UNet, the calls of ldm's PLMS (steps + 1:
// the first two, predictor and corrector, are both its first step) or DDIM, as harness.Sample
// plans them. env gives the rows, seed, samples and calibration; its layout and steps are set here.
func DryRun(arch Arch, sampler, steps, method string, raw map[string]string, env methods.Env) (*methods.Trace, error) {
	env.Layout = arch.Layout()
	if !IsUNet(arch) {
		if sampler == string(diffusion.PLMS) {
			return nil, fmt.Errorf("sampler plms samples Stable Diffusion's UNet; this model samples with ddpm, ddim or dpmpp")
		}
		sched, err := diffusion.NewSchedule(1000, steps)
		if err != nil {
			return nil, fmt.Errorf("steps %q: %w", steps, err)
		}
		env.Steps = sched.Steps()
		m, _, err := methods.New(method, raw, env)
		if err != nil {
			return nil, err
		}
		return methods.DryRun(m, env, arch, sched.TimestepMap)
	}
	kind, err := diffusion.ParseKind(sampler)
	if err != nil {
		return nil, err
	}
	p, err := NewLDMSampler(kind, steps)
	if err != nil {
		return nil, err
	}
	env.Steps = p.Steps()
	m, _, err := methods.New(method, raw, env)
	if err != nil {
		return nil, err
	}
	tr := &methods.Trace{NumSteps: env.Steps, Sampler: sampler, TokensPerRow: env.Layout.Tokens, BatchRows: env.Rows, TimestepMap: p.DDIMTimesteps()}
	// The sampler's state of one value, fed zero ε, says which call comes at which step and time.
	st := p.NewState([]float32{0})
	for {
		c, ok := st.Next()
		if !ok {
			break
		}
		step := env.Steps - 1 - c.Step // the harness's respaced index, counting down
		pl, err := m.Plan(c.Call, step)
		if err != nil {
			return nil, fmt.Errorf("call %d: %w", c.Call, err)
		}
		if err := m.Observe(c.Call, step, pl, nil); err != nil {
			return nil, fmt.Errorf("call %d: %w", c.Call, err)
		}
		tr.Record(c.Call, step, float64(c.T), pl, m.Notes(), arch.BlockFLOPs(pl, env.Rows), env.Layout.Tokens)
		if _, err := st.Step([]float32{0}); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// EvaluateRun computes the metrics of a run holding all its samples from their stored features
// and stores them (replacing earlier values against the same reference and extractor).
func EvaluateRun(db *store.DB, run store.Run, m MetricsSpec) ([]store.Metric, error) {
	var c Config
	if err := json.Unmarshal([]byte(run.ConfigJSON), &c); err != nil {
		return nil, fmt.Errorf("run %d: config_json: %w", run.ID, err)
	}
	if c.Features == nil {
		return nil, fmt.Errorf("run %d stored no features", run.ID)
	}
	samples, err := db.Samples(run.ID)
	if err != nil {
		return nil, err
	}
	if len(samples) != c.NumSamples {
		return nil, fmt.Errorf("run %d holds %d of its %d samples", run.ID, len(samples), c.NumSamples)
	}
	if len(samples) < 2 {
		return nil, fmt.Errorf("metrics need at least 2 samples, the run has %d", len(samples))
	}
	gen, err := c.Features.UnpackFeatures(samples)
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", run.ID, err)
	}
	want := map[string]bool{}
	for _, n := range m.Names {
		want[n] = true
	}
	var refFeats *metrics.Features
	if (want["precision"] || want["recall"] || want["kid"]) && m.RefFeatures != nil {
		if refFeats, err = m.RefFeatures(); err != nil {
			return nil, fmt.Errorf("reference features: %w", err)
		}
	}
	rep, err := metrics.Evaluate(gen, m.Ref, refFeats, c.Features.Extractor)
	if err != nil {
		return nil, err
	}
	var acc *float64
	if want["class_acc"] {
		if acc, err = classAccuracy(gen, samples); err != nil {
			return nil, fmt.Errorf("run %d: %w", run.ID, err)
		}
	}
	var out []store.Metric
	for _, v := range []struct {
		name string
		v    *float64
	}{{"fid", &rep.FID}, {"sfid", rep.SFID}, {"is", rep.IS}, {"precision", rep.Precision}, {"recall", rep.Recall}, {"kid", rep.KID}, {"class_acc", acc}} {
		if want[v.name] && v.v != nil {
			out = append(out, store.Metric{Name: MetricName(v.name, rep.Extractor), Value: *v.v, N: rep.N, Reference: m.Reference, Extractor: rep.Extractor, Resize: m.Resize})
		}
	}
	if err := db.PutMetrics(run.ID, out); err != nil {
		return nil, err
	}
	return out, nil
}
