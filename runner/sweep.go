package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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
	Arch  Arch
	// Load builds the model; it is called once, when the first configuration with missing
	// samples comes up, so a finished sweep (or one that only needs metrics) loads nothing.
	Load func() (Model, error)
	// LoadDecoder builds the VAE decoder of items whose Config.VAE is set, after Load.
	LoadDecoder    func() (ImageDecoder, error)
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
func ExperimentItems(e *experiments.Experiment, model, weights, backend, vae string, features *FeatureSpec) []SweepItem {
	guide := harness.DefaultGuideChannels
	if e.Sampling.Guide == experiments.GuideAll {
		guide = diffusion.GuidanceAll
	}
	var out []SweepItem
	for _, p := range e.Points() {
		out = append(out, SweepItem{Label: p.Label(), RawParams: p.Params, BaseSteps: e.Sampling.Steps,
			Config: Config{Model: model, Weights: weights, Method: p.Method, Sampler: e.Sampling.Sampler, Steps: p.Steps,
				CFGScale: e.Sampling.CFG, Guide: guide, Seed: e.Sampling.Seed, NumSamples: e.Sampling.Samples,
				Labels: e.Sampling.Labels, Backend: backend, Features: features, VAE: vae}})
	}
	return out
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
	logf := func(format string, args ...any) {
		if s.Log != nil {
			s.Log(fmt.Sprintf(format, args...))
		}
	}
	res := make([]ItemResult, len(s.Items))
	missing := make([]int, len(s.Items))
	allTotal := 0
	seen := map[string]string{}
	for k, it := range s.Items {
		if it.Config.Backend == "" {
			return nil, fmt.Errorf("sweep: %s: the backend configuration must be set (it is part of the config hash)", it.Label)
		}
		if (it.Config.Features != nil) != (s.Extractor != nil) {
			return nil, fmt.Errorf("sweep: %s: stored features and the extractor go together", it.Label)
		}
		h, err := ItemHash(it)
		if err != nil {
			return nil, fmt.Errorf("sweep: %w", err)
		}
		if first, dup := seen[h]; dup {
			return nil, fmt.Errorf("sweep: %s and %s are the same configuration", first, it.Label)
		}
		seen[h] = it.Label
		res[k] = ItemResult{Item: it, Hash: h}
		lo, hi := s.Shard.Range(it.Config.NumSamples)
		missing[k] = hi - lo
		run, err := s.DB.RunByHash(h)
		if errors.Is(err, store.ErrNotFound) {
			allTotal += missing[k]
			continue
		}
		if err != nil {
			return nil, err
		}
		res[k].Run = run
		have, err := s.DB.SampleIndices(run.ID)
		if err != nil {
			return nil, err
		}
		for _, i := range have {
			if i >= lo && i < hi {
				missing[k]--
			}
		}
		res[k].Have = len(have)
		allTotal += missing[k]
	}
	var model Model
	var decoder ImageDecoder
	allDone, allStart := 0, time.Now()
	for k, it := range s.Items {
		if missing[k] == 0 {
			continue
		}
		if model == nil {
			var err error
			if model, err = s.Load(); err != nil {
				return res, err
			}
		}
		if it.Config.VAE != "" && decoder == nil {
			if s.LoadDecoder == nil {
				return res, fmt.Errorf("%s: the configuration decodes with %s, and the sweep has no decoder", it.Label, it.Config.VAE)
			}
			var err error
			if decoder, err = s.LoadDecoder(); err != nil {
				return res, err
			}
		}
		start := time.Now()
		base := allDone
		job := Job{Config: it.Config, RawParams: it.RawParams, Model: model, BatchSize: s.BatchSize,
			OutDir: filepath.Join(s.OutDir, fmt.Sprintf("%s-%s", it.Config.Method, res[k].Hash[:12])), DB: s.DB, Shard: s.Shard,
			Record: s.Record, Audit: s.Audit, Extractor: s.Extractor, DiscardOutputs: s.DiscardOutputs, GitRev: s.GitRev,
			Decoder: decoderFor(it.Config, decoder), DecodeBatch: s.DecodeBatch,
			Progress: func(done, total int) {
				allDone = base + done
				if s.Progress != nil {
					s.Progress(SweepProgress{Item: k, Items: len(s.Items), Label: it.Label, Done: done, Total: total,
						AllDone: allDone, AllTotal: allTotal, Start: start, AllStart: allStart})
				}
			}}
		if s.Progress != nil {
			s.Progress(SweepProgress{Item: k, Items: len(s.Items), Label: it.Label, Total: missing[k], AllDone: allDone,
				AllTotal: allTotal, Start: start, AllStart: allStart})
		}
		jr, err := Run(ctx, job)
		if jr != nil {
			res[k].Run, res[k].Done, res[k].Timing = jr.Run, jr.Done, jr.Timing
		}
		allDone = base + res[k].Done
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("%s: %w", it.Label, err)
		}
		if have, err := s.DB.SampleIndices(res[k].Run.ID); err == nil {
			res[k].Have = len(have)
		}
	}
	for k, it := range s.Items {
		if res[k].Run.ID == 0 {
			continue // an empty shard of a tiny run: nothing stored
		}
		f, err := s.DB.RunFLOPs(res[k].Run.ID)
		if err != nil {
			return res, err
		}
		if f == nil && s.Arch != nil {
			pf, err := PlanFLOPs(s.Arch, it)
			if err != nil {
				return res, fmt.Errorf("%s: FLOPs: %w", it.Label, err)
			}
			if err := s.DB.PutRunFLOPs(res[k].Run.ID, pf); err != nil {
				return res, err
			}
			f = &pf
		}
		res[k].FLOPs = f
		if s.Metrics == nil {
			continue
		}
		switch {
		case res[k].Have < it.Config.NumSamples:
			res[k].NoMetric = fmt.Sprintf("%d of %d samples in this file: metrics come after `runbench merge`", res[k].Have, it.Config.NumSamples)
		case it.Config.Features == nil:
			res[k].NoMetric = "no stored features"
		default:
			if ms, ok := storedMetrics(s.DB, res[k].Run.ID, *s.Metrics, it.Config.Features.Extractor); ok {
				res[k].Metrics = ms
				continue
			}
			ms, err := EvaluateRun(s.DB, res[k].Run, *s.Metrics)
			if err != nil {
				res[k].NoMetric = err.Error()
				logf("%s: metrics not computed: %v", it.Label, err)
			}
			res[k].Metrics = ms
		}
	}
	if s.Metrics != nil && (slices.Contains(s.Metrics.Names, "psnr_vs_none") || slices.Contains(s.Metrics.Names, "ssim_vs_none")) {
		pairFidelity(s, s.Items, res, logf)
	}
	return res, nil
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

// PairRuns computes PSNR/SSIM against `none` for runs outside a sweep (e.g. after a merge): every
// complete run is paired with a complete `none` run whose configuration differs only in the
// method and its parameters (same weights, sampler, guidance, seed, samples, labels: the same
// noise and label per sample), preferring one with the same steps (a fewer-steps run is paired
// with the none run of another step count, as in a sweep). Runs without a partner are logged.
func PairRuns(db *store.DB, runs []store.Run, logf func(string, ...any)) error {
	type keys struct{ withSteps, noSteps, method string }
	key := func(r store.Run) (keys, error) {
		var c Config
		if err := json.Unmarshal([]byte(r.ConfigJSON), &c); err != nil {
			return keys{}, fmt.Errorf("run %d: config: %w", r.ID, err)
		}
		k := keys{method: c.Method}
		c.Method, c.Params, c.Features = "", nil, nil
		a, err := json.Marshal(c)
		if err != nil {
			return k, err
		}
		c.Steps = ""
		b, err := json.Marshal(c)
		k.withSteps, k.noSteps = string(a), string(b)
		return k, err
	}
	base := map[string]store.Run{}
	ks := make([]keys, len(runs))
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
	count := func(method string, raw map[string]string, steps string) (int64, error) {
		sched, err := diffusion.NewSchedule(1000, steps)
		if err != nil {
			return 0, fmt.Errorf("steps %q: %w", steps, err)
		}
		env := methods.Env{Layout: arch.Layout(), Steps: sched.Steps(), Rows: rows, Seed: it.Config.Seed, Samples: []int{0}}
		m, _, err := methods.New(method, raw, env)
		if err != nil {
			return 0, err
		}
		tr, err := methods.DryRun(m, env, arch, sched.TimestepMap)
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
	return store.RunFLOPs{PerImage: f, BasePerImage: b, Speedup: sp, RowsPerImage: rows, Convention: FLOPsConvention}, nil
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
