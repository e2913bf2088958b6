package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/pixart"
)

// flopsReport is what `runbench flops --json` prints.
type flopsReport struct {
	Model          string         `json:"model"`
	Method         string         `json:"method"`
	Params         map[string]any `json:"params"`
	Sampler        string         `json:"sampler"`
	Steps          int            `json:"steps"`
	Rows           int            `json:"rows"`
	TotalFLOPs     int64          `json:"total_flops"`
	TotalTFLOPs    float64        `json:"total_tflops"`
	BaselineTFLOPs float64        `json:"baseline_tflops"`
	Speedup        float64        `json:"speedup"`
	PerStepFLOPs   []int64        `json:"per_step_flops"`
	Schedule       []string       `json:"schedule"`
	Convention     string         `json:"convention"`
}

func newFlopsCmd() *cobra.Command {
	var mf modelFlags
	var sampler, steps, method, calFile string
	var params []string
	var images int
	var cfg float64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "flops --preset DiT-XL/2|PixArt-XL/2 --sampler ddim|dpmpp --steps 50 --method toca --param N=3 ... [--json]",
		Short: "Count a method's FLOPs and FLOPs speedup from its plans, without running the network",
		Long: `Replays the method's plan for every sampling call (schedules do not depend on the data) and counts
FLOPs with the papers' convention: the transformer blocks only (embedders, final layer and sampler
excluded), one image with its CFG null row (2 rows) unless --images/--cfg say otherwise. The
speedup is over method none with the same sampler and steps. PixArt-α (--preset PixArt-XL/2 or its
weights) is counted with DuCa-PixArt's counter, per row and with the model's maximum caption length.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, err := diffusion.ParseKind(sampler)
			if err != nil {
				return fmt.Errorf("--sampler: %w", err)
			}
			if kind == diffusion.PLMS {
				// Its first step takes two calls, and the UNet counts no FLOPs yet.
				return fmt.Errorf("--sampler plms: FLOPs are counted for ddpm, ddim and dpmpp only")
			}
			if kind == diffusion.DPMSolverPP {
				if _, err := diffusion.ParseDPMSolver(steps); err != nil {
					return fmt.Errorf("--steps: %w", err)
				}
			}
			cfgModel, err := mf.arch(cmd)
			if err != nil {
				return err
			}
			raw, err := methods.ParseParams(params)
			if err != nil {
				return err
			}
			info, err := methods.Lookup(method)
			if err != nil {
				return err
			}
			vals, err := info.Parse(raw)
			if err != nil {
				return err
			}
			if info.DataDependent {
				return fmt.Errorf("%s decides from each call's data: its FLOPs are known only after it ran (runbench sample --compare, or a sweep's executed FLOPs)", method)
			}
			rows := images
			if cfg > 1 {
				rows *= 2
			}
			if rows <= 0 {
				return fmt.Errorf("--images %d must be positive", images)
			}
			var cal *methods.Calibration
			if calFile != "" {
				if cal, err = methods.LoadCalibration(calFile); err != nil {
					return err
				}
				sched, err := diffusion.NewSchedule(1000, steps)
				if err != nil {
					return fmt.Errorf("--steps: %w", err)
				}
				if err := cal.Check(cfgModel.String(), sampler, sched.Steps(), cfg); err != nil {
					return fmt.Errorf("%s: %w", calFile, err)
				}
			}
			base, err := dryRun(cfgModel, "none", nil, steps, rows, nil)
			if err != nil {
				return err
			}
			runSteps := steps
			if info.Steps != nil {
				runSteps = fmt.Sprint(info.Steps(vals))
			}
			tr, err := dryRun(cfgModel, method, raw, runSteps, rows, cal)
			if err != nil {
				return err
			}
			rep := flopsReport{Model: cfgModel.String(), Method: method, Params: vals, Sampler: sampler, Steps: tr.NumSteps, Rows: rows,
				TotalFLOPs: tr.TotalFLOPs, TotalTFLOPs: float64(tr.TotalFLOPs) / 1e12, BaselineTFLOPs: float64(base.TotalFLOPs) / 1e12,
				Speedup: float64(base.TotalFLOPs) / float64(tr.TotalFLOPs), Schedule: tr.Schedule,
				Convention: "transformer blocks only (ToCa/DuCa counter); embedders, final layer, sampler excluded"}
			for _, c := range tr.Calls {
				rep.PerStepFLOPs = append(rep.PerStepFLOPs, c.FLOPs)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(rep)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s, %s %d steps, %d rows\nmethod %s %v\ntotal %.4f TFLOPs (baseline %.4f), FLOPs speedup %.3fx\n",
				rep.Model, rep.Sampler, rep.Steps, rows, method, vals, rep.TotalTFLOPs, rep.BaselineTFLOPs, rep.Speedup)
			return nil
		},
	}
	mf.register(cmd)
	cmd.Flags().StringVar(&sampler, "sampler", "ddim", "ddpm, ddim or dpmpp (the schedules of some methods depend on it only through --steps)")
	cmd.Flags().StringVar(&steps, "steps", "50", "sampling steps (respacing spec)")
	cmd.Flags().StringVar(&method, "method", "none", "acceleration method (see `runbench methods`)")
	cmd.Flags().StringArrayVar(&params, "param", nil, "method parameter name=value (repeatable)")
	cmd.Flags().IntVar(&images, "images", 1, "images per model call")
	cmd.Flags().Float64Var(&cfg, "cfg", 1.5, "guidance scale (> 1 doubles the rows, as the papers count)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&calFile, "calibration", "", "calibration `FILE` (runbench calibrate) for the methods whose schedule is calibrated (magcache)")
	return cmd
}

// dryRun counts a method's FLOPs on a configuration without weights.
func dryRun(c archConfig, method string, raw map[string]string, steps string, rows int, cal *methods.Calibration) (*methods.Trace, error) {
	sched, err := diffusion.NewSchedule(1000, steps)
	if err != nil {
		return nil, fmt.Errorf("--steps: %w", err)
	}
	env := methods.Env{Layout: c.Layout(), Steps: sched.Steps(), Rows: rows, Calibration: cal}
	m, _, err := methods.New(method, raw, env)
	if err != nil {
		return nil, err
	}
	return methods.DryRun(m, env, c, sched.TimestepMap)
}

// archConfig is an architecture whose plans' FLOPs can be counted without weights.
type archConfig interface {
	hook.FLOPsCounter
	Layout() hook.Layout
	String() string
}

// arch resolves the flags' architecture without loading weights onto a backend (a PixArt-α
// checkpoint is read to learn its configuration).
func (f *modelFlags) arch(cmd *cobra.Command) (archConfig, error) {
	isPixArt, err := f.isPixArt()
	if err != nil || !isPixArt {
		if err != nil {
			return nil, err
		}
		return f.config()
	}
	size := 0
	if f.preset != "" || cmd.Flags().Changed("image-size") {
		size = f.imageSize
	}
	r, err := pixart.Resolve(pixart.Source{Preset: f.preset, ImageSize: size, Weights: f.weights, Heads: f.heads, Prefix: "--"})
	if err != nil {
		return nil, err
	}
	return r.Config, nil
}
