package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/vae"
	"github.com/cachebench/cachebench/runner"
)

// generate samples --num images through runner.Run: images to --out-dir, the run to SQLite; a
// rerun resumes at the first missing image.
func generate(ctx context.Context, cmd *cobra.Command, m *dit.Model, kind diffusion.Kind, sf sampleFlags, mf modelFlags) error {
	spec := m.Spec()
	var labels []int64
	if sf.labels != "" {
		var err error
		if labels, err = parseLabels(sf.labels, spec.NumClasses); err != nil {
			return err
		}
	}
	weightsHash := dit.RandomWeightsID // as runbench run records it, so both find each other's runs
	if mf.weights != "" {
		var err error
		if weightsHash, err = checkpoint.FileHash(mf.weights); err != nil {
			return err
		}
	}
	raw, err := methods.ParseParams(sf.params)
	if err != nil {
		return err
	}
	level, err := harness.ParseLevel(sf.record)
	if err != nil {
		return fmt.Errorf("--record: %w", err)
	}
	if sf.audit < 0 || sf.audit > sf.batch {
		return fmt.Errorf("--audit-samples %d: want 0..--batch (%d)", sf.audit, sf.batch)
	}
	if sf.vaeBatch < 0 {
		return fmt.Errorf("--vae-batch %d: want ≥ 0 (0: the sampling batch)", sf.vaeBatch)
	}
	var dec *vae.Decoder
	if sf.vae == "random:sd" {
		// Throughput without a checkpoint: SD's decoder with random weights (the images are noise).
		var err error
		if dec, err = vae.New(m.Backend(), vae.RandomWeights(vae.SD, 0)); err != nil {
			return fmt.Errorf("--vae: %w", err)
		}
		dec.Hash = "random-sd-seed-0"
	} else if sf.vae != "" {
		var err error
		if dec, err = vae.Load(m.Backend(), sf.vae); err != nil {
			return fmt.Errorf("--vae: %w", err)
		}
		if _, _, _, err := dec.ImageShape(spec.Channels, spec.Height, spec.Width); err != nil {
			return fmt.Errorf("--vae %s: %w", sf.vae, err)
		}
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	dbPath := sf.db
	if dbPath == "" {
		dbPath = filepath.Join(sf.outDir, "runs.db")
	}
	if err := mkdirFor(dbPath); err != nil {
		return err
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("sampling"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
	job := runner.Job{
		Config: runner.Config{Model: m.Config.String(), Weights: weightsHash, Method: sf.method, Sampler: string(kind), Steps: sf.steps,
			CFGScale: sf.cfg, Guide: sf.guide(), Seed: sf.seed, NumSamples: sf.numImages, Labels: labels, Backend: engine.Config(backendCfg)},
		RawParams: raw, Model: m, BatchSize: sf.batch, OutDir: sf.outDir, DB: db, Compare: sf.compare, GitRev: gitRev(),
		Record: level, Audit: sf.audit,
		Progress: func(done, total int) { bar.ChangeMax(total); _ = bar.Set(done) },
	}
	if dec != nil {
		job.Decoder, job.Config.VAE, job.DecodeBatch = dec, dec.ID(), sf.vaeBatch
	}
	if sf.calFile != "" {
		// runner.Run checks it against the model, weights, sampler, steps and cfg.
		if job.Calibration, err = runner.ReadCalibrationFile(sf.calFile); err != nil {
			return fmt.Errorf("--calibration: %w", err)
		}
		if job.Config.Calibration, err = runner.CalibrationID(&job.Calibration.Calibration); err != nil {
			return err
		}
	}
	// Each configuration writes into a folder of its own (METHOD-HASH12, as runbench run does): a
	// second run with another method or setting must not overwrite the first one's images.
	_, cj, err := runner.ResolveConfig(job.Config, raw)
	if err != nil {
		return err
	}
	job.OutDir = filepath.Join(sf.outDir, fmt.Sprintf("%s-%s", sf.method, store.ConfigHash(cj)[:12]))
	res, err := runner.Run(ctx, job)
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		if ctx.Err() != nil && res != nil {
			return fmt.Errorf("interrupted; finished batches are committed in %s (run %d), rerun the same command to resume", dbPath, res.Run.ID)
		}
		return err
	}
	if res.Done == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): all %d images already done in %s\n", res.Run.ID, res.Run.ConfigHash[:12], sf.numImages, dbPath)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): %d images to %s, recorded in %s (batch %d, %d graph families compiled)\n",
		res.Run.ID, res.Run.ConfigHash[:12], res.Done, job.OutDir, dbPath, sf.batch, m.GraphCount())
	res.Timing.Report(cmd.OutOrStdout(), sf.method, res.Base)
	if res.Steady.Images > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "steady state (batches after the first):\n")
		var base *harness.Timing
		if res.Base != nil {
			base = &res.BaseSteady
		}
		res.Steady.Report(cmd.OutOrStdout(), sf.method, base)
	}
	if sf.timingJSON != "" {
		return writeTimingJSON(sf.timingJSON, res, sf, m)
	}
	return nil
}

// timingReport is what --timing-json writes: one run's timing split, its steady state and,
// with --compare, method none's on the same batches (tools/gpu/check.sh reads it).
type timingReport struct {
	Method            string            `json:"method"`
	Params            map[string]string `json:"params,omitempty"`
	Model             string            `json:"model"`
	Device            string            `json:"device"`
	Images            int               `json:"images"`
	Batch             int               `json:"batch"`
	Calls             int               `json:"calls"`
	CompileS          float64           `json:"compile_s"`
	GraphFamilies     int               `json:"graph_families"`
	WallS             float64           `json:"wall_s"`
	MsPerImage        float64           `json:"ms_per_image"`
	SteadyImages      int               `json:"steady_images"`
	SteadyMsPerImage  float64           `json:"steady_ms_per_image"`
	ForwardMsPerCall  float64           `json:"forward_ms_per_call"`
	OverheadMsPerCall float64           `json:"overhead_ms_per_call"`
	SamplerMsPerCall  float64           `json:"sampler_ms_per_call"`
	OverheadPct       float64           `json:"overhead_pct"`
	FLOPs             int64             `json:"flops"`
	DecodeImagesPerS  float64           `json:"decode_images_per_s,omitempty"`
	CacheBytes        map[string]int64  `json:"cache_peak_bytes,omitempty"`
	BaseSteadyMs      float64           `json:"none_steady_ms_per_image,omitempty"`
	BaseFLOPs         int64             `json:"none_flops,omitempty"`
	RealizedSpeedup   float64           `json:"realized_speedup,omitempty"`
	FLOPsSpeedup      float64           `json:"flops_speedup,omitempty"`
}

func writeTimingJSON(path string, res *runner.JobResult, sf sampleFlags, m *dit.Model) error {
	t := res.Timing
	steady := res.Steady
	if steady.Images == 0 {
		steady = t // one batch: no steady state to separate
	}
	perImage := func(x harness.Timing) float64 { return 1000 * x.Wall().Seconds() / float64(max(x.Images, 1)) }
	perCall := func(d time.Duration, x harness.Timing) float64 { return 1000 * d.Seconds() / float64(max(x.Calls, 1)) }
	raw, _ := methods.ParseParams(sf.params)
	r := timingReport{Method: sf.method, Params: raw, Model: m.Config.String(), Device: engine.Describe(m.Backend()),
		Images: t.Images, Batch: sf.batch, Calls: t.Calls, CompileS: m.CompileTime().Seconds(), GraphFamilies: m.GraphCount(),
		WallS: t.Wall().Seconds(), MsPerImage: perImage(t), SteadyImages: steady.Images, SteadyMsPerImage: perImage(steady),
		ForwardMsPerCall: perCall(steady.Forward, steady), OverheadMsPerCall: perCall(steady.Overhead, steady),
		SamplerMsPerCall: perCall(steady.Update, steady), OverheadPct: 100 * steady.Overhead.Seconds() / max(steady.Wall().Seconds(), 1e-9),
		FLOPs: t.FLOPs}
	r.CacheBytes = t.CacheBytes
	if t.Decode > 0 {
		r.DecodeImagesPerS = float64(t.Images) / t.Decode.Seconds()
	}
	if res.Base != nil {
		base := res.BaseSteady
		if base.Images == 0 {
			base = *res.Base
		}
		r.BaseSteadyMs, r.BaseFLOPs = perImage(base), res.Base.FLOPs
		r.RealizedSpeedup = r.BaseSteadyMs / r.SteadyMsPerImage
		r.FLOPsSpeedup = float64(res.Base.FLOPs) / float64(max(t.FLOPs, 1))
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := mkdirFor(path); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// gitRev is the VCS revision stamped into the binary, if any.
func gitRev() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// mkdirFor creates the folder a file will be written to.
func mkdirFor(path string) error {
	if dir := filepath.Dir(path); dir != "." {
		return os.MkdirAll(dir, 0o755)
	}
	return nil
}
