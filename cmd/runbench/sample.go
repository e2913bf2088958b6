package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/runner"
)

type sampleFlags struct {
	sampler    string
	steps      string
	cfg        float64
	guideAll   bool
	replay     string
	out        string
	numImages  int
	seed       int64
	labels     string
	batch      int
	outDir     string
	db         string
	method     string
	params     []string
	trace      string
	compare    bool
	record     string
	audit      int
	timingJSON string
	vae        string
	vaeBatch   int
	calFile    string // --calibration
}

// policy builds the method of one batch (a fresh instance: methods keep per-batch state) and its
// cache; "none" gets no cache.
func (sf sampleFlags) policy(m interface{ Layout() hook.Layout }, steps, rows int, samples []int) (methods.Method, *hook.Cache, error) {
	raw, err := methods.ParseParams(sf.params)
	if err != nil {
		return nil, nil, err
	}
	env := methods.Env{Layout: m.Layout(), Steps: steps, Rows: rows, Seed: sf.seed, Samples: samples}
	pol, _, err := methods.New(sf.method, raw, env)
	if err != nil {
		return nil, nil, err
	}
	var cache *hook.Cache
	if methods.NeedsCache(sf.method) {
		cache = hook.NewCache(m.Layout())
	}
	return pol, cache, nil
}

func newSampleCmd() *cobra.Command {
	var mf modelFlags
	var sf sampleFlags
	cmd := &cobra.Command{
		Use:   "sample --weights W --heads H --sampler ddpm|ddim|dpmpp|plms --steps K --cfg S [--replay FILE --out OUT.safetensors]",
		Short: "Generate samples, or replay a reference trajectory step by step",
		Long: `Samples with the reference diffusion (linear schedule over 1000 steps respaced to --steps,
DDPM with learned-range variance or DDIM η=0, classifier-free guidance when --cfg > 1), or with
DPM-Solver++ (--sampler dpmpp: multistep order 2, time-uniform, --steps a plain count, guidance
on every ε channel; PixArt-α's sampler).

Replay (--replay FILE --out OUT): reads the starting noise x_init, the labels y and, for DDPM,
the per-step noise noise_000, noise_001, ... from FILE (the layout of testdata/dit/sampling_*.safetensors)
and writes every step's state x_000 ... (plus pred_xstart_k and model_out_k) and the final
sample to OUT, in the same layout. x_init may hold the whole CFG state (2B rows: images, then
their null-label copies) or just the B image rows; the output follows the file. Use it to compare
this implementation, step by step, with any PyTorch implementation run on the same noise.

Stable Diffusion's UNet (--model unet, or weights with UNet keys; --heads its num_heads) replays
PLMS only (--sampler plms --steps K, guidance on every ε channel; --method none, deepcache, tomesd
or dato): FILE holds x_T, cond and uncond (the layout of testdata/sd-unet/plms.safetensors) and
OUT gets call_k_t, call_k_eps_cfg, x_i, pred_x0_i and final under those names. To sample the
UNet from prompts, write an experiment with [model] family = "unet" and use runbench run.

Without --replay, --num images are generated: the noise and label of image i depend only on
(--seed, i), whatever the batch size.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, err := diffusion.ParseKind(sf.sampler)
			if err != nil {
				return fmt.Errorf("--sampler: %w", err)
			}
			// The fewer-steps baseline is a method that changes the schedule.
			if info, err := methods.Lookup(sf.method); err == nil && info.Steps != nil {
				raw, err := methods.ParseParams(sf.params)
				if err != nil {
					return err
				}
				vals, err := info.Parse(raw)
				if err != nil {
					return err
				}
				sf.steps = fmt.Sprint(info.Steps(vals))
			}
			var solver *diffusion.DPMSolver
			if kind == diffusion.DPMSolverPP {
				if solver, err = diffusion.ParseDPMSolver(sf.steps); err != nil {
					return fmt.Errorf("--steps: %w", err)
				}
			}
			sched, err := diffusion.NewSchedule(1000, sf.steps)
			if err != nil {
				return fmt.Errorf("--steps: %w", err)
			}
			if sf.cfg < 0 {
				return fmt.Errorf("--cfg %g: must be ≥ 0 (≤ 1 disables guidance)", sf.cfg)
			}
			isUNet, err := mf.isUNet()
			if err != nil {
				return err
			}
			if isUNet {
				if sf.replay == "" {
					return fmt.Errorf("the UNet replays golden files here (--replay FILE --out OUT); to sample it from prompts, run an experiment with [model] family = \"unet\" (runbench run, experiments/default_unet.toml)")
				}
				if err := replayOnlyFlags(cmd); err != nil {
					return err
				}
				m, err := mf.loadUNet(cmd)
				if err != nil {
					return err
				}
				ctx, stop := interruptContext(cmd.ErrOrStderr())
				defer stop()
				return replayUNet(ctx, m, kind, sf)
			}
			if kind == diffusion.PLMS {
				return fmt.Errorf("--sampler plms drives Stable Diffusion's UNet (--model unet); DiT and PixArt-α sample with ddpm, ddim or dpmpp")
			}
			isPixArt, err := mf.isPixArt()
			if err != nil {
				return err
			}
			if isPixArt {
				m, err := mf.loadPixArt(cmd)
				if err != nil {
					return err
				}
				ctx, stop := interruptContext(cmd.ErrOrStderr())
				defer stop()
				if sf.replay == "" {
					return fmt.Errorf("PixArt-α samples from prompts with runbench run (an experiment's [prompts]); runbench sample replays a golden file (--replay)")
				}
				return replayPixArt(ctx, m, kind, solver, sf)
			}
			m, err := mf.load(cmd)
			if err != nil {
				return err
			}
			ctx, stop := interruptContext(cmd.ErrOrStderr())
			defer stop()
			if sf.replay != "" {
				if err := replayOnlyFlags(cmd); err != nil {
					return err
				}
				return replay(ctx, m, kind, sched, solver, sf)
			}
			_ = sched
			return generate(ctx, cmd, m, kind, sf, mf)
		},
	}
	mf.register(cmd)
	cmd.Flags().StringVar(&sf.sampler, "sampler", "ddim", "ddpm, ddim, dpmpp (DPM-Solver++) or plms (the SD UNet's)")
	cmd.Flags().StringVar(&sf.steps, "steps", "50", `sampling steps: "K" (reference respacing), "K1,K2" sections, or "ddimK" (integer stride)`)
	cmd.Flags().Float64Var(&sf.cfg, "cfg", 1.5, "classifier-free guidance scale (≤ 1: off)")
	cmd.Flags().BoolVar(&sf.guideAll, "guide-all", false, "guide all ε channels (diffusers) instead of channels 0-2 (DiT reference)")
	cmd.Flags().StringVar(&sf.replay, "replay", "", "replay file with x_init, y (and noise_k for DDPM)")
	cmd.Flags().StringVar(&sf.out, "out", "", "replay output safetensors")
	cmd.Flags().IntVar(&sf.numImages, "num", 8, "number of images to generate")
	cmd.Flags().Int64Var(&sf.seed, "seed", 0, "seed; sample i's noise and label derive from (seed, i) only")
	cmd.Flags().StringVar(&sf.labels, "labels", "", "comma-separated class labels, cycled over the images (default: drawn from (seed, i))")
	cmd.Flags().IntVar(&sf.batch, "batch", 8, "images per model call (does not change any result)")
	cmd.Flags().StringVar(&sf.outDir, "out-dir", "out/samples", "folder of the runs: images (PNG) or latents (safetensors) go to OUT-DIR/METHOD-HASH12/, the database to OUT-DIR/runs.db")
	cmd.Flags().StringVar(&sf.method, "method", "none", "acceleration method (fora, toca, ...; `runbench flops --help` counts its FLOPs)")
	cmd.Flags().StringArrayVar(&sf.params, "param", nil, "method parameter name=value (repeatable)")
	cmd.Flags().StringVar(&sf.trace, "trace", "", "with --replay: write the per-call action log (actions, fresh token indices, FLOPs) as JSON")
	cmd.Flags().BoolVar(&sf.compare, "compare", false, "also time method none on the same inputs and report the wall-clock speedup next to the FLOPs speedup")
	cmd.Flags().StringVar(&sf.record, "record", "light", "step_stats recording: off, light (batch-level dynamics, cache error, tokens, FLOPs) or full (also per sample, with token indices)")
	cmd.Flags().IntVar(&sf.audit, "audit-samples", 0, "images per batch audited for cache error: a shadow full pass and an uncached trajectory each (costs about 2 images' compute per audited image)")
	cmd.Flags().StringVar(&sf.vae, "vae", "", "AutoencoderKL checkpoint (SD v1, sd-vae-ft-ema/mse; LDM or diffusers keys): decode the sampled latents and store PNG images; random:sd = SD's decoder with random weights (throughput only)")
	cmd.Flags().IntVar(&sf.vaeBatch, "vae-batch", 0, "images per VAE decoder pass (0: the sampling batch)")
	cmd.Flags().StringVar(&sf.timingJSON, "timing-json", "", "write the run's timing (compile seconds, steady ms/image after the first batch, split by forward/policy/sampler, FLOPs; with --compare none's too) as JSON to this file")
	cmd.Flags().StringVar(&sf.db, "db", "", "SQLite results database to record the run in (default: OUT-DIR/runs.db)")
	cmd.Flags().StringVar(&sf.calFile, "calibration", "", "calibration `FILE` of this model, weights, sampler, steps and cfg, written by runbench calibrate, for the methods that read one (teacache, magcache)")
	return cmd
}

// replayOnlyFlags refuses the flags of the recorded path: a replay writes --out and records
// nothing, so they would be silently ignored.
func replayOnlyFlags(cmd *cobra.Command) error {
	for _, name := range []string{"db", "record", "audit-samples", "vae", "vae-batch", "timing-json", "num", "out-dir", "labels", "batch", "calibration"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not apply to --replay (it writes --out and records nothing in a database)", name)
		}
	}
	return nil
}

func (sf sampleFlags) guide() int {
	if sf.guideAll || sf.sampler == string(diffusion.DPMSolverPP) {
		return diffusion.GuidanceAll
	}
	return harness.DefaultGuideChannels
}

// replay runs the sampler on a reference file's noise and writes every step in its layout.
// solver is DPM-Solver++'s (nil for the other samplers).
func replay(ctx context.Context, m *dit.Model, kind diffusion.Kind, sched *diffusion.Schedule, solver *diffusion.DPMSolver, sf sampleFlags) error {
	if sf.out == "" {
		return fmt.Errorf("--replay needs --out")
	}
	f, err := checkpoint.Load(sf.replay)
	if err != nil {
		return err
	}
	spec := m.Spec()
	per := spec.Channels * spec.Height * spec.Width
	xInit, y, rows, images, err := replayInputs(f, spec, sf.cfg, m.Config.String())
	if err != nil {
		return err
	}
	stateRows := images
	if sf.cfg > 1 {
		stateRows = 2 * images
	}
	req := harness.Request{Sampler: kind, Schedule: sched, Solver: solver, CFGScale: float32(sf.cfg), GuideChannels: sf.guide(), XInit: xInit, Labels: y[:images]}
	if kind.NeedsNoise() {
		req.Noise = replayNoise(f, images*per)
	}
	outs := map[string]*checkpoint.Tensor{}
	keepRows := rows
	shape := func(r, c int) []int { return []int{r, c, spec.Height, spec.Width} }
	req.OnStep = func(s harness.StepInfo) error {
		outs[fmt.Sprintf("x_%03d", s.Call)] = checkpoint.NewF32(append([]float32(nil), s.X[:keepRows*per]...), shape(keepRows, spec.Channels)...)
		outs[fmt.Sprintf("pred_xstart_%03d", s.Call)] = checkpoint.NewF32(append([]float32(nil), s.PredXStart[:keepRows*per]...), shape(keepRows, spec.Channels)...)
		oc := spec.OutChannels()
		outs[fmt.Sprintf("model_out_%03d", s.Call)] = checkpoint.NewF32(append([]float32(nil), s.ModelOut[:keepRows*oc*spec.Height*spec.Width]...), shape(keepRows, oc)...)
		return nil
	}
	pol, cache, err := sf.policy(m, sched.Steps(), stateRows, seq(images))
	if err != nil {
		return err
	}
	req.Policy, req.Cache = pol, cache
	req.Tokens = sf.trace != "" // the trace lists the tokens each partial step recomputed
	tsMap := sched.TimestepMap
	if solver != nil {
		tsMap = solver.TimestepMap()
	}
	tr := &methods.Trace{Method: sf.method, NumSteps: sched.Steps(), Sampler: string(kind), CFGScale: sf.cfg, Labels: y,
		TokensPerRow: m.Tokens(), BatchRows: stateRows, TimestepMap: tsMap}
	if raw, err := methods.ParseParams(sf.params); err == nil {
		info, _ := methods.Lookup(sf.method)
		if v, err := info.Parse(raw); err == nil {
			tr.Params = v
		}
	}
	var tm harness.Timing
	full := hook.FullPlan(m.Layout())
	record := req.OnStep
	req.OnStep = func(s harness.StepInfo) error {
		p := s.Plan
		if p == nil {
			p = full
		}
		tr.Record(s.Call, s.Step, s.Time, p, pol.Notes(), hook.ExecutedFLOPs(m, p, s.Rows), m.Tokens())
		tm.Add(s, m, full)
		return record(s)
	}
	res, err := harness.Sample(ctx, m, req)
	if err != nil {
		return err
	}
	tm.Images = images
	var base *harness.Timing
	if sf.compare {
		if base, err = runner.TimeBaseline(ctx, m, req); err != nil {
			return err
		}
	}
	tm.Report(os.Stderr, sf.method, base)
	if sf.trace != "" {
		if err := tr.Write(sf.trace); err != nil {
			return err
		}
	}
	outs["sample"] = checkpoint.NewF32(res.Sample, shape(images, spec.Channels)...)
	ts := make([]int64, sched.Steps())
	for k := range ts {
		ts[k] = tsMap[sched.Steps()-1-k]
	}
	outs["timesteps"] = checkpoint.NewI64(ts, len(ts))
	if solver != nil {
		// The timesteps above are rounded; the model received these (PixArt's golden model_t).
		mt := make([]float32, solver.Steps())
		for k := range mt {
			mt[k] = solver.ModelTime(k)
		}
		outs["model_t"] = checkpoint.NewF32(mt, len(mt))
	}
	meta := map[string]string{"producer": "runbench sample --replay", "replay": sf.replay, "sampler": string(kind),
		"steps": sf.steps, "cfg": fmt.Sprint(sf.cfg), "model": m.Config.String()}
	return checkpoint.WriteSafetensors(sf.out, outs, meta)
}

// replayInputs reads a replay file's starting state x_init (the images, or the whole CFG state)
// and labels y (with CFG: the image labels, then as many null labels), and checks them.
func replayInputs(f *checkpoint.File, spec hook.Spec, cfgScale float64, model string) (xInit []float32, y []int64, rows, images int, err error) {
	xt, err := f.Get("x_init")
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if len(xt.Shape) != 4 || xt.Shape[1] != spec.Channels || xt.Shape[2] != spec.Height || xt.Shape[3] != spec.Width {
		return nil, nil, 0, 0, fmt.Errorf("%s: x_init has shape %v, want [rows, %d, %d, %d] for %s", f.Path, xt.Shape, spec.Channels, spec.Height, spec.Width, model)
	}
	if xInit, err = xt.Float32(); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: x_init: %w", f.Path, err)
	}
	yt, err := f.Get("y")
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if y, err = yt.Int64(); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("%s: y must hold integer labels: %w", f.Path, err)
	}
	images = len(y)
	stateRows := images
	if cfgScale > 1 {
		if len(y)%2 != 0 {
			return nil, nil, 0, 0, fmt.Errorf("%s: y has %d labels; with --cfg %g it must hold the image labels then as many null labels", f.Path, len(y), cfgScale)
		}
		images, stateRows = len(y)/2, len(y)
		for i, v := range y[images:] {
			if v != int64(spec.NumClasses) {
				return nil, nil, 0, 0, fmt.Errorf("%s: y[%d] = %d, want the null label %d in the second half (CFG)", f.Path, images+i, v, spec.NumClasses)
			}
		}
	}
	rows = xt.Shape[0]
	if rows != images && rows != stateRows {
		return nil, nil, 0, 0, fmt.Errorf("%s: x_init has %d rows, want %d (images) or %d (whole CFG state)", f.Path, rows, images, stateRows)
	}
	return xInit, y, rows, images, nil
}

// replayNoise feeds DDPM call k the file's noise_k: for the whole state, or for the image rows
// only (the null rows then get zero noise; they never feed back into the images).
func replayNoise(f *checkpoint.File, imageValues int) func(int, []float32) error {
	return func(k int, dst []float32) error {
		name := fmt.Sprintf("noise_%03d", k)
		nt, err := f.Get(name)
		if err != nil {
			return fmt.Errorf("DDPM replay needs per-step noise: %w", err)
		}
		nz, err := nt.Float32()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", f.Path, name, err)
		}
		switch len(nz) {
		case len(dst):
			copy(dst, nz)
		case imageValues:
			copy(dst, nz)
			clear(dst[len(nz):])
		default:
			return fmt.Errorf("%s: %s has %d values, want %d or %d", f.Path, name, len(nz), len(dst), imageValues)
		}
		return nil
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func parseLabels(s string, classes int) ([]int64, error) {
	var out []int64
	for _, p := range strings.Split(s, ",") {
		var v int64
		if _, err := fmt.Sscan(strings.TrimSpace(p), &v); err != nil || v < 0 || v >= int64(classes) {
			return nil, fmt.Errorf("--labels: %q is not a class in [0, %d)", p, classes)
		}
		out = append(out, v)
	}
	return out, nil
}
