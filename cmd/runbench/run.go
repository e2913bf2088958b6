package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/captions"
	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/extractors"
	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/inception"
	"github.com/cachebench/cachebench/models/pixart"
	"github.com/cachebench/cachebench/models/unet"
	"github.com/cachebench/cachebench/models/vae"
	"github.com/cachebench/cachebench/runner"
)

// sweepFlags are the flags of `runbench run`.
type sweepFlags struct {
	db, shard, out string
	samples, batch int
	randomWeights  bool
	noMetrics      bool
	list           bool
}

func newRunCmd() *cobra.Command {
	var f sweepFlags
	cmd := &cobra.Command{
		Use:   "run EXPERIMENT.toml [--db DB] [--samples N] [--shard i/n]",
		Short: "Run an experiment file: every method and parameter point, resumable, shardable",
		Long: `Runs every configuration of an experiment file (experiments/README.md documents the format)
into one SQLite file. Every configuration sees the same (noise, label) for each sample index.
A configuration already finished is skipped; one that was killed resumes at its first missing
batch. Ctrl-C finishes the batch in flight, commits it and exits (a second Ctrl-C aborts at once,
losing only that batch).

--shard i/n (0 ≤ i < n) samples the i-th contiguous part of every configuration's sample range
into its own file (default OUTPUT/results-shard-i-of-n.db); combine the files with
` + "`runbench merge`" + `, which also computes the metrics that need all samples.

--samples, --batch, --random-weights and --no-metrics make a smoke test of a full-size file, e.g.
  runbench run experiments/toca_dit_ddim50.toml --samples 8 --random-weights --no-metrics
(a different sample count is a different configuration, so it never mixes with the full run).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runExperiment(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", "", "results database (default OUTPUT/results.db, or OUTPUT/results-shard-i-of-n.db with --shard)")
	fl.StringVar(&f.shard, "shard", "", "i/n: sample only part i (0-based) of n of every configuration's sample indices")
	fl.StringVar(&f.out, "out", "", "output folder (overrides the file's output)")
	fl.IntVar(&f.samples, "samples", 0, "samples per configuration (overrides sampling.samples; for smoke tests)")
	fl.IntVar(&f.batch, "batch", 0, "samples per model call (overrides sampling.batch; changes no result)")
	fl.BoolVar(&f.randomWeights, "random-weights", false, "ignore model.weights and use random weights (smoke tests; needs model.preset or model.arch)")
	fl.BoolVar(&f.noMetrics, "no-metrics", false, "ignore the [metrics] section")
	fl.BoolVar(&f.list, "list", false, "print the configurations and their state, run nothing")
	return cmd
}

// parseShard reads "i/n" with 0 ≤ i < n.
func parseShard(s string) (runner.Shard, error) {
	if s == "" {
		return runner.Shard{}, nil
	}
	var sh runner.Shard
	var rest string
	if n, _ := fmt.Sscanf(s, "%d/%d%s", &sh.I, &sh.N, &rest); n != 2 || sh.N < 1 || sh.I < 0 || sh.I >= sh.N {
		return runner.Shard{}, fmt.Errorf("--shard %q: want i/n with 0 ≤ i < n, e.g. 0/4", s)
	}
	return sh, nil
}

// sweepDBPath is where a run (or one shard of it) is recorded by default.
func sweepDBPath(e *experiments.Experiment, sh runner.Shard) string {
	if sh.N > 1 {
		return filepath.Join(e.Output, fmt.Sprintf("results-shard-%d-of-%d.db", sh.I, sh.N))
	}
	return filepath.Join(e.Output, "results.db")
}

// loadExperiment loads a file and turns its problems into one error listing all of them.
func loadExperiment(path string, o experiments.Overrides) (*experiments.Experiment, error) {
	e, err := experiments.Load(path, o)
	var probs experiments.Problems
	if errors.As(err, &probs) {
		return nil, fmt.Errorf("%d problem(s) in %s:\n%s", len(probs), path, probs.Error())
	}
	return e, err
}

// resolvedModel is an experiment's model: its architecture and weights identity (recorded in
// every configuration), its prompts (text-conditioned models) and how to build it on a backend.
type resolvedModel struct {
	arch           runner.Arch // counts FLOPs without weights (nil: the loaded model counts them)
	name           string      // the architecture's one-line description
	channels, size int         // the sampled latent's channels and side
	weights        string
	prompts        []string // the captions the labels index (nil: class labels)
	promptsID      string
	load           func(backend string) (runner.Model, error)
}

// resolveModel resolves an experiment's [model] (dit.Resolve, pixart.Resolve) and [prompts]: a
// preset or arch is known without reading the weights; weights with heads only are read now,
// and so are a prompted model's captions, checked against it before any compute.
func resolveModel(e *experiments.Experiment) (*resolvedModel, error) {
	m := e.Model
	switch m.Family {
	case experiments.FamilyPixArt:
		return resolvePixArt(e)
	case experiments.FamilyUNet:
		return resolveUNet(e)
	}
	r, err := dit.Resolve(dit.Source{Preset: m.Preset, ImageSize: m.ImageSize, Arch: m.Arch, Weights: m.Weights, Heads: m.Heads, Prefix: "model."})
	if err != nil {
		return nil, err
	}
	c := r.Config
	return &resolvedModel{arch: c, name: c.String(), channels: c.InChannels, size: c.InputSize, weights: r.Weights,
		load: func(backend string) (runner.Model, error) {
			b, err := engine.New(backend)
			if err != nil {
				return nil, err
			}
			return r.Load(b)
		}}, nil
}

// resolvePixArt resolves a PixArt-α and its captions ([prompts]: the prompt file and its
// features, or the built-in Fashion-MNIST encoder).
func resolvePixArt(e *experiments.Experiment) (*resolvedModel, error) {
	m := e.Model
	size := 0
	if m.Preset != "" {
		size = m.ImageSize
	}
	r, err := pixart.Resolve(pixart.Source{Preset: m.Preset, ImageSize: size, Weights: m.Weights, Heads: m.Heads, Prefix: "model."})
	if err != nil {
		return nil, err
	}
	c := r.Config
	prompts, err := captions.ReadPrompts(e.Prompts.File)
	if err != nil {
		return nil, fmt.Errorf("prompts.file: %w", err)
	}
	var feats *captions.Features
	if e.Prompts.Encoder != "" {
		feats, err = captions.TinyEncoder{}.Features(prompts)
	} else {
		feats, err = captions.Open(e.Prompts.Features)
	}
	if err != nil {
		return nil, fmt.Errorf("prompts: %w", err)
	}
	if err := captions.Check(prompts, feats, c.CaptionChannels, c.MaxLength); err != nil {
		return nil, fmt.Errorf("prompts: %w", err)
	}
	if feats, err = feats.WithMaxLen(c.MaxLength); err != nil {
		return nil, fmt.Errorf("prompts: %w", err)
	}
	sum := sha256.Sum256([]byte(strings.Join(prompts, "\n")))
	rm := &resolvedModel{arch: c, name: c.String(), channels: c.InChannels, size: c.InputSize, weights: r.Weights,
		prompts: prompts, promptsID: fmt.Sprintf("prompts@%x features@%.16s", sum[:8], feats.ID)}
	rm.load = func(backend string) (runner.Model, error) {
		b, err := engine.New(backend)
		if err != nil {
			return nil, err
		}
		pm, err := r.Load(b)
		if err != nil {
			return nil, err
		}
		caps := &pixart.Captions{Lengths: make([]int, feats.Len())}
		for i := range caps.Lengths {
			caps.Features = append(caps.Features, feats.Padded(i)...)
			caps.Lengths[i] = feats.Valid(i)
		}
		return pm, pm.SetCaptions(caps)
	}
	return rm, nil
}

// resolveUNet resolves Stable Diffusion's UNet and its text contexts: the checkpoint is read now
// (its configuration gives the context width, checked against [prompts] before any compute) and
// put on a backend by load; preset SD-v1 without weights is the random-weights UNet (seed 0).
// [prompts] gives the contexts: the fmnist-tiny encoder's [P, 12, 32] with the empty caption's
// encoding (zeros) as the null context, or a context file (runner.ReadUNetContexts).
func resolveUNet(e *experiments.Experiment) (*resolvedModel, error) {
	m := e.Model
	heads := m.Heads
	if heads == 0 {
		heads = unet.DefaultHeads
	}
	var file *checkpoint.File
	var c unet.Config
	weights := dit.RandomWeightsID
	if m.Weights != "" {
		var err error
		if weights, err = checkpoint.FileHash(m.Weights); err != nil {
			return nil, fmt.Errorf("model.weights: %w", err)
		}
		if file, err = checkpoint.Load(m.Weights); err != nil {
			return nil, fmt.Errorf("model.weights: %w", err)
		}
		if c, _, err = unet.InferConfig(file, heads); err != nil {
			return nil, fmt.Errorf("model.weights: %w", err)
		}
		if m.Preset == experiments.UNetPreset && !sameUNet(c, unet.SDv1) {
			return nil, fmt.Errorf("model.weights %s: %s, not preset %s (%s)", m.Weights, c, m.Preset, unet.SDv1)
		}
	} else {
		c = unet.SDv1
		c.Heads = heads
	}
	if m.Latent%c.Downscale() != 0 {
		return nil, fmt.Errorf("model.latent %d: the UNet halves its latent %d times; want a multiple of %d", m.Latent, c.Levels()-1, c.Downscale())
	}
	if m.Decoder != "" && c.InChannels%4 != 0 {
		return nil, fmt.Errorf("model.decoder %s: the UNet samples %d-channel latents, not a 2×2 space-to-depth (a multiple of 4)", m.Decoder, c.InChannels)
	}
	prompts, err := captions.ReadPrompts(e.Prompts.File)
	if err != nil {
		return nil, fmt.Errorf("prompts.file: %w", err)
	}
	var ctx *runner.UNetContexts
	if e.Prompts.Encoder != "" {
		ctx, err = tinyContexts(prompts, c.ContextDim)
	} else {
		ctx, err = runner.ReadUNetContexts(e.Prompts.Features, len(prompts), c.ContextDim)
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(strings.Join(prompts, "\n")))
	name := fmt.Sprintf("%s, latent %dx%dx%d", c, c.InChannels, m.Latent, m.Latent)
	rm := &resolvedModel{name: name, channels: c.InChannels, size: m.Latent, weights: weights, prompts: prompts,
		promptsID: fmt.Sprintf("prompts@%x contexts@%.16s", sum[:8], ctx.ID)}
	rm.load = func(backend string) (runner.Model, error) {
		b, err := engine.New(backend)
		if err != nil {
			return nil, err
		}
		f := file
		if f == nil {
			f = checkpoint.Random(c.ExpectedShapes(), 0, 1, checkpoint.FanIn)
		}
		um, err := unet.New(b, f, heads)
		if err != nil {
			return nil, fmt.Errorf("model.weights: %w", err)
		}
		um.Hash = weights
		d, err := unet.NewDenoiser(um, m.Latent)
		if err != nil {
			return nil, fmt.Errorf("model.latent: %w", err)
		}
		if err := d.SetContexts(ctx.Cond, ctx.Null); err != nil {
			return nil, fmt.Errorf("prompts: %w", err)
		}
		return unetModel{d}, nil
	}
	return rm, nil
}

// sameUNet compares two UNet configurations.
func sameUNet(a, b unet.Config) bool {
	return a.String() == b.String()
}

// tinyContexts encodes prompts with the embedded default's fixed word embedding: [P, 12, 32],
// zero past each caption's words, and the null context of the empty caption "" — by the
// encoder's rule (zero past the words) all zeros, as tools/train_unet.py trains with it.
func tinyContexts(prompts []string, width int) (*runner.UNetContexts, error) {
	if width != captions.TinyWidth {
		return nil, fmt.Errorf("prompts.encoder fmnist-tiny makes %d-wide contexts, and the UNet's cross-attention takes context_dim %d (give prompts.features instead)", captions.TinyWidth, width)
	}
	feats, err := captions.TinyEncoder{}.Features(prompts)
	if err != nil {
		return nil, fmt.Errorf("prompts: %w", err)
	}
	ctx := &runner.UNetContexts{P: len(prompts), L: captions.TinyMaxLen, Width: width, Source: "fmnist-tiny",
		Null: make([]float32, captions.TinyMaxLen*width), ID: "fmnist-tiny@" + feats.ID}
	for i := range prompts {
		ctx.Cond = append(ctx.Cond, feats.Padded(i)...)
	}
	return ctx, nil
}

// unetModel is the UNet's denoiser as the runner samples it.
type unetModel struct{ *unet.Denoiser }

// Backend is the backend the weights live on.
func (m unetModel) Backend() backends.Backend { return m.Model().Backend() }

// sweepMetrics opens the extractor and the reference of an experiment's [metrics] (nil, nil
// and a reason when the model's outputs are latents, which have no image features yet).
func sweepMetrics(e *experiments.Experiment, rm *resolvedModel, backend string) (metrics.Extractor, *runner.MetricsSpec, string, error) {
	if e.Metrics == nil {
		return nil, nil, "", nil
	}
	if !imageOutputs(e, rm.channels) {
		return nil, nil, fmt.Sprintf("metrics skipped: the model outputs %d-channel %dx%d latents and the experiment names no "+
			"[model] vae or decoder to decode them into images %s reads (the latents are stored)", rm.channels, rm.size, rm.size, e.Metrics.Extractor), nil
	}
	ex, spec, err := openMetrics(e.Metrics, backend)
	return ex, spec, "", err
}

// imageOutputs tells whether a sweep stores images its [metrics] extractor can read: RGB (or
// decoded by a VAE), or grey images (the samples, or a fixed decoder's) for the Fashion-MNIST
// classifier.
func imageOutputs(e *experiments.Experiment, channels int) bool {
	if d := runner.DecoderByName(e.Model.Decoder, channels); d != nil {
		if c, _, _, err := d.ImageShape(channels, 1, 1); err == nil {
			channels = c
		}
	}
	return e.Model.VAE != "" || channels == 3 || (channels == 1 && e.Metrics != nil && e.Metrics.Extractor == "fmnist")
}

// featuresOf is the stored feature layout of an extractor, by its ID.
func featuresOf(id string) *runner.FeatureSpec {
	k, ok := extractors.ByID(id)
	if !ok {
		return nil
	}
	return &runner.FeatureSpec{Extractor: id, Pool: k.Pool, Spatial: k.Spatial, Logits: k.Logits}
}

// openMetrics prepares the Inception extractor and the reference statistics of a [metrics]
// section; reference images are read and extracted only when a metric needs them.
func openMetrics(em *experiments.Metrics, backend string) (metrics.Extractor, *runner.MetricsSpec, error) {
	k, err := extractors.Lookup(em.Extractor)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics.extractor: %w", err)
	}
	ex, err := k.Open(backend, em.Weights, inception.DefaultBatchSize)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics.weights: %w", err)
	}
	resize := k.Resize
	ref, err := metrics.ReadRefStats(em.Reference)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics.reference: %w", err)
	}
	refID, err := metrics.ReferenceID(em.Reference)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics.reference: %w", err)
	}
	spec := &runner.MetricsSpec{Names: em.Names, Ref: ref, Reference: refID, Resize: resize}
	if p := em.ReferenceImages; p != "" {
		var once sync.Once
		var feats *metrics.Features
		var ferr error
		spec.RefFeatures = func() (*metrics.Features, error) {
			once.Do(func() {
				im, err := datasets.ReadImages(p)
				if err != nil {
					ferr = fmt.Errorf("metrics.reference_images: %w", err)
					return
				}
				feats, ferr = ex.Extract(im.Pix, im.N, im.H, im.W, nil)
			})
			return feats, ferr
		}
	}
	return ex, spec, nil
}

// interruptContext is cancelled by the first SIGINT or SIGTERM (the sweep finishes its batch in
// flight; SIGTERM is what Slurm sends on preemption and scancel); a second signal exits at once,
// which loses only that batch (every batch is one transaction).
func interruptContext(w io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range ch {
			n++
			if n == 1 {
				fmt.Fprintln(w, "\ninterrupt: finishing the batch in flight, then stopping (Ctrl-C again to stop now)")
				cancel()
				continue
			}
			fmt.Fprintln(w, "\ninterrupt: stopping now; the batch in flight is lost, committed batches are kept")
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel() }
}

func runExperiment(cmd *cobra.Command, path string, f sweepFlags) error {
	sh, err := parseShard(f.shard)
	if err != nil {
		return err
	}
	// 0 is the overrides' "not given"; a 0 the user typed is an error, not the file's value
	// (--samples 0 once ran all 50,000 samples of a paper file).
	for _, name := range []string{"samples", "batch"} {
		if v, _ := cmd.Flags().GetInt(name); cmd.Flags().Changed(name) && v <= 0 {
			return fmt.Errorf("--%s %d: want a positive number", name, v)
		}
	}
	e, err := loadExperiment(path, experiments.Overrides{Samples: f.samples, Batch: f.batch, Output: f.out,
		RandomWeights: f.randomWeights, NoMetrics: f.noMetrics})
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	backendFlag, _ := cmd.Flags().GetString("backend")
	if backendFlag == "" {
		backendFlag = e.Model.Backend
	}
	backend := engine.Config(backendFlag)
	rm, err := resolveModel(e)
	if err != nil {
		return err
	}
	level, err := harness.ParseLevel(e.Record)
	if err != nil {
		return fmt.Errorf("%s: record: %w", path, err)
	}
	dbPath := f.db
	if dbPath == "" {
		dbPath = sweepDBPath(e, sh)
	}
	var db *store.DB
	if _, statErr := os.Stat(dbPath); !f.list || statErr == nil { // listing creates nothing
		if err := mkdirFor(dbPath); err != nil {
			return err
		}
		if db, err = store.Open(dbPath); err != nil {
			return err
		}
		defer db.Close()
	}
	ex, mspec, features, err := sweepFeatures(e, rm, backend, f.list, logf)
	if err != nil {
		return err
	}
	vaeID, err := vaeIDOf(path, e)
	if err != nil {
		return err
	}
	items := runner.ExperimentItems(e, rm.name, rm.weights, backend, vaeID, rm.promptsID, features)
	if f.list {
		return listSweep(cmd.OutOrStdout(), db, items)
	}
	sw := runner.Sweep{Items: items, Arch: rm.arch, DB: db, Prompts: rm.prompts, OutDir: filepath.Join(e.Output, "samples"), BatchSize: e.Sampling.Batch,
		Shard: sh, Record: level, Audit: e.Audit, DiscardOutputs: e.Outputs == experiments.OutputsHash, Metrics: mspec, GitRev: gitRev(),
		Extractor: ex, Log: func(msg string) { logf("%s", msg) }}
	switch {
	case e.Model.VAE != "":
		sw.DecodeBatch, sw.LoadDecoder = e.Model.VAEBatch, decoderLoader(path, e.Model.VAE, vaeID, backend, logf)
	case e.Model.Decoder != "":
		d := runner.DecoderByName(e.Model.Decoder, rm.channels)
		sw.LoadDecoder = func() (runner.ImageDecoder, error) { return d, nil }
	}
	var model runner.Model
	sw.Load = func() (runner.Model, error) {
		logf("loading %s (%s) on %s", rm.name, rm.weights, backend)
		m, err := rm.load(backend)
		model = m
		return m, err
	}
	var bar *progressbar.ProgressBar
	sw.Progress = sweepProgress(stderr, &bar)
	ctx, stop := interruptContext(stderr)
	defer stop()
	logf("%s: %d configurations × %d samples (shard %s) → %s", path, len(items), e.Sampling.Samples, shardName(sh), dbPath)
	res, err := runner.RunSweep(ctx, sw)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(stderr)
	}
	if res != nil {
		printSweep(cmd.OutOrStdout(), res)
	}
	if gc, ok := model.(interface{ GraphCount() int }); ok {
		logf("%d graph families compiled", gc.GraphCount())
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted: finished batches are committed in %s; resume with: %s", dbPath, resumeCommand(cmd, path))
	}
	return err
}

// sweepFeatures is what a sweep extracts and stores per sample (nil without [metrics] or with
// outputs the extractor cannot read) and the metrics it computes. Listing names the features
// without opening the network, so that it shows the same configuration hashes as running.
func sweepFeatures(e *experiments.Experiment, rm *resolvedModel, backend string, list bool, logf func(string, ...any)) (metrics.Extractor, *runner.MetricsSpec, *runner.FeatureSpec, error) {
	if list {
		if e.Metrics == nil || !imageOutputs(e, rm.channels) {
			return nil, nil, nil, nil
		}
		k, err := extractors.Lookup(e.Metrics.Extractor)
		if err != nil {
			return nil, nil, nil, err
		}
		id, err := k.ID(e.Metrics.Weights)
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, featuresOf(id), nil
	}
	ex, mspec, why, err := sweepMetrics(e, rm, backend)
	if err != nil || ex == nil {
		if why != "" {
			logf("%s", why)
		}
		return nil, nil, nil, err
	}
	return ex, mspec, featuresOf(ex.ID()), nil
}

// vaeIDOf names an experiment's decoder by its checkpoint's content, or a fixed decoder by its
// name ("" without one).
func vaeIDOf(path string, e *experiments.Experiment) (string, error) {
	if e.Model.Decoder != "" {
		return e.Model.Decoder, nil
	}
	if e.Model.VAE == "" {
		return "", nil
	}
	hash, err := checkpoint.FileHash(e.Model.VAE)
	if err != nil {
		return "", fmt.Errorf("%s: model.vae: %w", path, err)
	}
	return vae.IDOf(hash), nil
}

// decoderLoader loads the experiment's VAE decoder when the first configuration needs it.
func decoderLoader(path, file, id, backend string, logf func(string, ...any)) func() (runner.ImageDecoder, error) {
	return func() (runner.ImageDecoder, error) {
		b, err := engine.New(backend)
		if err != nil {
			return nil, err
		}
		logf("loading the VAE decoder %s", file)
		d, err := vae.Load(b, file)
		if err != nil {
			return nil, fmt.Errorf("%s: model.vae: %w", path, err)
		}
		if d.ID() != id {
			return nil, fmt.Errorf("%s: model.vae %s changed while the sweep ran", path, file)
		}
		return d, nil
	}
}

// sweepProgress draws one bar per configuration with the whole sweep's count and ETA.
func sweepProgress(stderr io.Writer, bar **progressbar.ProgressBar) func(runner.SweepProgress) {
	cur := -1
	return func(p runner.SweepProgress) {
		if p.Item != cur {
			if *bar != nil {
				_ = (*bar).Finish()
				fmt.Fprintln(stderr)
			}
			cur = p.Item
			*bar = progressbar.NewOptions(p.Total, progressbar.OptionSetWriter(stderr), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionSetWidth(20),
				progressbar.OptionThrottle(200*time.Millisecond))
		}
		eta := "?"
		if p.AllDone > 0 {
			left := time.Duration(float64(time.Since(p.AllStart)) / float64(p.AllDone) * float64(p.AllTotal-p.AllDone))
			eta = left.Round(time.Second).String()
		}
		(*bar).Describe(fmt.Sprintf("[%d/%d] %s | all %d/%d, ETA %s |", p.Item+1, p.Items, p.Label, p.AllDone, p.AllTotal, eta))
		_ = (*bar).Set(p.Done)
	}
}

// resumeCommand is the command line that resumes an interrupted sweep.
func resumeCommand(cmd *cobra.Command, path string) string {
	args := []string{"runbench", "run", path}
	for _, fl := range []string{"db", "shard", "out", "samples", "batch", "random-weights", "no-metrics", "backend"} {
		if x := cmd.Flag(fl); x != nil && x.Changed {
			args = append(args, "--"+fl+"="+x.Value.String())
		}
	}
	return strings.Join(args, " ")
}

func shardName(sh runner.Shard) string {
	if sh.N <= 1 {
		return "all"
	}
	return fmt.Sprintf("%d/%d", sh.I, sh.N)
}

// listSweep prints every configuration with its hash and how many samples the file holds.
func listSweep(w io.Writer, db *store.DB, items []runner.SweepItem) error {
	for k, it := range items {
		h, err := runner.ItemHash(it)
		if err != nil {
			return err
		}
		have := 0
		if db != nil { // nil: no database yet
			if r, err := db.RunByHash(h); err == nil {
				s, err := db.SampleIndices(r.ID)
				if err != nil {
					return err
				}
				have = len(s)
			}
		}
		fmt.Fprintf(w, "%3d  %s  %-40s  steps %-6s %d/%d samples\n", k+1, h[:12], it.Label, it.Config.Steps, have, it.Config.NumSamples)
	}
	return nil
}

// printSweep prints one line per configuration: samples, FLOPs speedup, time per image, metrics.
func printSweep(w io.Writer, res []runner.ItemResult) {
	for _, r := range res {
		line := fmt.Sprintf("%s  %-40s  %d/%d samples", short(r.Hash), r.Item.Label, r.Have, r.Item.Config.NumSamples)
		if r.Done > 0 {
			line += fmt.Sprintf(" (%d now, %.3f s/image)", r.Done, r.Timing.Wall().Seconds()/float64(max(r.Timing.Images, 1)))
		}
		if r.FLOPs != nil {
			line += fmt.Sprintf("  %.4g TFLOPs/image, %.2fx", float64(r.FLOPs.PerImage)/1e12, r.FLOPs.Speedup)
		}
		for _, m := range r.Metrics {
			line += fmt.Sprintf("  %s %.4f", m.Name, m.Value)
		}
		if r.NoMetric != "" {
			line += "  (no metrics: " + r.NoMetric + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
