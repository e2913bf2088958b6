package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/runner"
)

type calibrateFlags struct {
	samples, batch int
	out, db        string
	targets        string
	methods        string
	params         []string
	noVerify       bool
	randomWeights  bool
}

func newCalibrateCmd() *cobra.Command {
	var f calibrateFlags
	cmd := &cobra.Command{
		Use:   "calibrate EXPERIMENT.toml [--samples 8] [--out FILE.json] [--db DB] [--target 1.5,2.0]",
		Short: "Calibrate the threshold caches (TeaCache, FBCache/DBCache, MagCache) on an experiment's model and sampler",
		Long: `Samples a few images (--samples, default 8; noise and labels from (seed, index) as a run draws
them) with the experiment's [model], [sampling] and [prompts], every call fully computed, and
measures per call and per batch row what the threshold caches read:

  TeaCache  the relative L1 change of block 0's modulated input against the previous call,
            and of the guided model output: the degree-4 rescale polynomial from the first to
            the second, fitted by least squares over all calls and rows;
  FBCache   the relative L1 change of block 0's residual (Fn = 1) against every earlier call;
            quantiles 10/50/90 % per call and overall;
  MagCache  the ratio of the whole stack's residual norms (mean over tokens) between
            consecutive calls: its mean over the rows per call, and its standard deviation.

Every batch is sampled twice (one gate per plan: TeaCache's statistic, then FBCache's); both
passes compute everything and follow the same trajectory.

The calibration is written as JSON (--out, default OUTPUT/calibration-SAMPLER-STEPS-cfgCFG.json),
which an experiment names with calibration = "FILE" in [model] or in a [methods.NAME] table, and
stored in the results database (--db, default OUTPUT/results.db; table calibrations, keyed by
model, weights, sampler, steps and cfg). A run whose model, weights, sampler, steps or cfg differ
from the file's is refused before anything is sampled.

--target 1.5,2.0 then finds, per method (--methods, default teacache,fbcache,magcache), the
threshold (thresh) PREDICTED to give each FLOPs speedup: the method itself is replayed offline on
the recorded statistics (its gate deciding on what the executor would have measured, the FLOPs
billed as a run bills them). It is a prediction, made on the uncached trajectory; each pick is then
VERIFIED by sampling the calibration samples with it, and the predicted and measured (executed)
FLOPs speedups are printed, a miss of more than 10 % of the target flagged. --no-verify skips
the sampling. The other parameters of a method keep their defaults unless --param sets them:
  --param teacache.decide=per-sample --param dbcache.Fn=1
(a replay needs Fn = 1: the calibration measures the residual of block 0 only). Per-batch
decisions pool the batch's rows, so predictions hold for the batch size used here (--batch,
default sampling.batch).

Ctrl-C during the measurement stops without writing anything; during verification it stops
after the call in flight, keeping the file, the database row and the verifications printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runCalibrate(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.samples, "samples", 8, "calibration samples")
	fl.IntVar(&f.batch, "batch", 0, "samples per model call (default sampling.batch)")
	fl.StringVar(&f.out, "out", "", "calibration file (default OUTPUT/calibration-SAMPLER-STEPS-cfgCFG.json)")
	fl.StringVar(&f.db, "db", "", "results database the calibration is stored in (default OUTPUT/results.db)")
	fl.StringVar(&f.targets, "target", "", "FLOPs speedups to find thresholds for, e.g. 1.5,2.0")
	fl.StringVar(&f.methods, "methods", "teacache,fbcache,magcache", "methods whose thresholds --target searches")
	fl.StringArrayVar(&f.params, "param", nil, "METHOD.name=value: a fixed parameter of a searched method (repeatable)")
	fl.BoolVar(&f.noVerify, "no-verify", false, "with --target: print the predicted thresholds only, sample nothing more")
	fl.BoolVar(&f.randomWeights, "random-weights", false, "ignore model.weights and use random weights (smoke tests; needs model.preset or model.arch)")
	return cmd
}

// parseTargets reads "1.5,2.0".
func parseTargets(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(v >= 1) {
			return nil, fmt.Errorf("--target %q: want FLOPs speedups ≥ 1 separated by commas, e.g. 1.5,2.0", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// searchParams reads --param METHOD.name=value into fixed parameters per searched method.
func searchParams(names []string, kvs []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, n := range names {
		if _, err := methods.Lookup(n); err != nil {
			return nil, fmt.Errorf("--methods: %w", err)
		}
		out[n] = map[string]string{}
	}
	for _, kv := range kvs {
		m, rest, ok := strings.Cut(kv, ".")
		k, v, ok2 := strings.Cut(rest, "=")
		if !ok || !ok2 || k == "" {
			return nil, fmt.Errorf("--param %q: want METHOD.name=value, e.g. teacache.decide=per-sample", kv)
		}
		p, searched := out[m]
		if !searched {
			return nil, fmt.Errorf("--param %q: method %s is not among --methods", kv, m)
		}
		if k == runner.ThresholdParam {
			return nil, fmt.Errorf("--param %q: %s is what --target searches", kv, k)
		}
		p[k] = v
	}
	return out, nil
}

// defaultCalibrationPath names a calibration by what it is valid for.
func defaultCalibrationPath(e *experiments.Experiment) string {
	steps := strings.NewReplacer(",", "_", "/", "_").Replace(e.Sampling.Steps)
	return filepath.Join(e.Output, fmt.Sprintf("calibration-%s-%s-cfg%g.json", e.Sampling.Sampler, steps, e.Sampling.CFG))
}

func runCalibrate(cmd *cobra.Command, path string, f calibrateFlags) error {
	if f.samples <= 0 || (cmd.Flags().Changed("batch") && f.batch <= 0) {
		return fmt.Errorf("--samples %d, --batch %d: want positive numbers", f.samples, f.batch)
	}
	targets, err := parseTargets(f.targets)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range strings.Split(f.methods, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	fixed, err := searchParams(names, f.params)
	if err != nil {
		return err
	}
	e, err := loadExperiment(path, experiments.Overrides{Batch: f.batch, RandomWeights: f.randomWeights, NoMetrics: true, NoCalibration: true})
	if err != nil {
		return err
	}
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	backendFlag, _ := cmd.Flags().GetString("backend")
	if backendFlag == "" {
		backendFlag = e.Model.Backend
	}
	backend := engine.Config(backendFlag)
	rm, err := resolveModel(e)
	if err != nil {
		return err
	}
	out, dbPath := f.out, f.db
	if out == "" {
		out = defaultCalibrationPath(e)
	}
	if dbPath == "" {
		dbPath = filepath.Join(e.Output, "results.db")
	}
	for _, p := range []string{out, dbPath} {
		if err := mkdirFor(p); err != nil {
			return err
		}
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stderr, "loading %s (%s) on %s\n", rm.name, rm.weights, backend)
	model, err := rm.load(backend)
	if err != nil {
		return err
	}
	job := runner.CalibrateJob{Config: runner.ExperimentCalibration(e, rm.name, rm.weights, backend, rm.promptsID, f.samples),
		Model: model, Prompts: rm.prompts, BatchSize: min(e.Sampling.Batch, f.samples)}
	ctx, stop := interruptContext(stderr)
	defer stop()

	bar := callBar(stderr, "calibrating (2 passes)")
	job.Progress = bar.progress
	res, err := runner.Calibrate(ctx, job)
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted during the measurement: nothing was written")
		}
		return err
	}
	cal := res.File
	if err := cal.Write(out); err != nil {
		return err
	}
	if err := cal.Store(db, gitRev()); err != nil {
		return err
	}
	printCalibration(stdout, cal, res.StatAgreement)
	fmt.Fprintf(stdout, "calibration written to %s and stored in %s\n", out, dbPath)
	if len(targets) == 0 {
		return nil
	}

	fmt.Fprintf(stdout, "\nthresholds for target FLOPs speedups (predicted: replayed on the recorded statistics; measured: sampled)\n")
	type row struct {
		pick runner.ThresholdPick
		raw  map[string]string
	}
	var rows []row
	for _, n := range names {
		picks, err := res.Recording.Search(n, fixed[n], &cal.Calibration, targets)
		if err != nil {
			fmt.Fprintf(stdout, "  %-9s cannot be replayed: %v\n", n, err)
			continue
		}
		for _, p := range picks {
			rows = append(rows, row{p, fixed[n]})
			note := ""
			if !p.Reachable {
				note = fmt.Sprintf("  (unreachable: %.3fx at most with %s)", p.Predicted, paramsText(fixed[n]))
			}
			fmt.Fprintf(stdout, "  %-9s target %5.2fx  thresh %-10.5g predicted %.3fx%s\n", n, p.Target, p.Threshold, p.Predicted, note)
		}
	}
	if f.noVerify {
		return nil
	}
	fmt.Fprintf(stdout, "\nverification on the %d calibration samples:\n", f.samples)
	misses := 0
	for _, r := range rows {
		bar := callBar(stderr, fmt.Sprintf("%s thresh=%.4g", r.pick.Method, r.pick.Threshold))
		job.Progress = bar.progress
		v, err := runner.Verify(ctx, job, &cal.Calibration, r.pick, r.raw)
		bar.finish()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: the calibration is in %s and %s; the verifications above are complete", out, dbPath)
			}
			return err
		}
		flag := "ok"
		if v.Miss {
			flag, misses = fmt.Sprintf("MISS (> %.0f %% off target)", 100*runner.VerifyTolerance), misses+1
		}
		fmt.Fprintf(stdout, "  %-9s target %5.2fx  thresh %-10.5g predicted %.3fx  measured %.3fx  %s\n",
			v.Method, v.Target, v.Threshold, v.Predicted, v.Measured, flag)
	}
	if misses > 0 {
		fmt.Fprintf(stdout, "%d of %d picks missed their target by more than %.0f %%: more samples (--samples) make the replay's statistics closer to a run's\n",
			misses, len(rows), 100*runner.VerifyTolerance)
	}
	return nil
}

func paramsText(p map[string]string) string {
	if len(p) == 0 {
		return "the default parameters"
	}
	var parts []string
	for k, v := range p {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// printCalibration summarises what was measured.
func printCalibration(w io.Writer, c *runner.CalibrationFile, agreement float64) {
	fmt.Fprintf(w, "%s, %s %d steps, cfg %g: %d samples\n", c.Model, c.Sampler, c.Steps, c.CFG, c.Images)
	fmt.Fprintf(w, "  TeaCache rescale polynomial (highest degree first): %s  (%d points, RMSE %.3g)\n",
		floats(c.TeaCache, "%.6g"), c.TeaCacheFit.Points, c.TeaCacheFit.RMSE)
	fmt.Fprintf(w, "  FBCache residual change, quantiles 10/50/90 %%: %.4g / %.4g / %.4g\n",
		c.FBCacheDiff[0].Value, c.FBCacheDiff[1].Value, c.FBCacheDiff[2].Value)
	fmt.Fprintf(w, "  MagCache magnitude ratios: %s\n", floats(c.MagRatios, "%.4f"))
	fmt.Fprintf(w, "  executor statistics reproduced on the host within %.2g (relative)\n", agreement)
}

func floats(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// callBar is a progress bar over model calls, drawn once the total is known.
type callBarT struct {
	w    io.Writer
	desc string
	bar  *progressbar.ProgressBar
}

func callBar(w io.Writer, desc string) *callBarT { return &callBarT{w: w, desc: desc} }

func (b *callBarT) progress(done, total int) {
	if b.bar == nil {
		b.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(b.w), progressbar.OptionSetDescription(b.desc),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(20),
			progressbar.OptionThrottle(200*time.Millisecond))
	}
	_ = b.bar.Set(done)
}

func (b *callBarT) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
		fmt.Fprintln(b.w)
	}
}
