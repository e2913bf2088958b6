package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/captions"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/pixart"
	"github.com/cachebench/cachebench/models/unet"
	"github.com/cachebench/cachebench/runner"
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
	var images, latent, contextTokens int
	var cfg float64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "flops --preset DiT-XL/2|PixArt-XL/2 --sampler ddim|dpmpp --steps 50 --method toca --param N=3 ... [--json]\n  flops --model unet --weights W [--heads 8] --latent 64 --sampler plms --steps 50 --method dato ...",
		Short: "Count a method's FLOPs and FLOPs speedup from its plans, without running the network",
		Long: `Replays the method's plan for every sampling call (schedules do not depend on the data) and counts
FLOPs with the papers' convention: the transformer blocks only (embedders, final layer and sampler
excluded), one image with its CFG null row (2 rows) unless --images/--cfg say otherwise. The
speedup is over method none with the same sampler and steps. PixArt-α (--preset PixArt-XL/2 or its
weights) is counted with DuCa-PixArt's counter, per row and with the model's maximum caption length.
Stable Diffusion's UNet (--model unet, or weights whose keys are a UNet's; --heads is num_heads, 8
when omitted) samples with --sampler plms (its default; every one of its steps + 1 model calls is
counted: the first step calls twice) or ddim (ldm's, one call per step). Its counter counts every
convolution, linear layer and attention product (the papers' MACs × 2), on --latent × --latent
latents with a text context of --context-tokens tokens. The weights are loaded to learn its blocks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, err := diffusion.ParseKind(sampler)
			if err != nil {
				return fmt.Errorf("--sampler: %w", err)
			}
			isUNet, err := mf.isUNet()
			if err != nil {
				return err
			}
			if isUNet && !cmd.Flags().Changed("sampler") {
				kind, sampler = diffusion.PLMS, string(diffusion.PLMS)
			}
			switch {
			case isUNet && kind != diffusion.PLMS && kind != diffusion.DDIM:
				return fmt.Errorf("--sampler %s: the UNet samples with plms or ddim (ldm's, on Stable Diffusion v1's schedule)", kind)
			case !isUNet && kind == diffusion.PLMS:
				return fmt.Errorf("--sampler plms samples Stable Diffusion's UNet (--model unet); DiT and PixArt-α sample with ddpm, ddim or dpmpp")
			}
			if kind == diffusion.DPMSolverPP {
				if _, err := diffusion.ParseDPMSolver(steps); err != nil {
					return fmt.Errorf("--steps: %w", err)
				}
			}
			var cfgModel archConfig
			if isUNet {
				cfgModel, err = mf.unetArch(cmd, latent, contextTokens)
			} else {
				cfgModel, err = mf.arch(cmd)
			}
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
				if isUNet {
					return fmt.Errorf("--calibration: the UNet's methods read no calibration")
				}
				if err := cal.Check(cfgModel.String(), sampler, sched.Steps(), cfg); err != nil {
					return fmt.Errorf("%s: %w", calFile, err)
				}
			}
			base, err := dryRun(cfgModel, sampler, "none", nil, steps, rows, nil)
			if err != nil {
				return err
			}
			runSteps := steps
			if info.Steps != nil {
				runSteps = fmt.Sprint(info.Steps(vals))
			}
			tr, err := dryRun(cfgModel, sampler, method, raw, runSteps, rows, cal)
			if err != nil {
				return err
			}
			rep := flopsReport{Model: cfgModel.String(), Method: method, Params: vals, Sampler: sampler, Steps: tr.NumSteps, Rows: rows,
				TotalFLOPs: tr.TotalFLOPs, TotalTFLOPs: float64(tr.TotalFLOPs) / 1e12, BaselineTFLOPs: float64(base.TotalFLOPs) / 1e12,
				Speedup: float64(base.TotalFLOPs) / float64(tr.TotalFLOPs), Schedule: tr.Schedule,
				Convention: "transformer blocks only (ToCa/DuCa counter); embedders, final layer, sampler excluded"}
			if isUNet {
				rep.Convention = "UNet: every convolution, linear layer and attention product, time embedding and output head included (models/unet BlockFLOPs); PLMS: every model call (steps + 1)"
			}
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
	cmd.Flags().StringVar(&sampler, "sampler", "ddim", "ddpm, ddim, dpmpp (the schedules of some methods depend on it only through --steps), or plms (the UNet; ddim there is ldm's)")
	cmd.Flags().IntVar(&latent, "latent", 0, "the UNet's latent side (64 for SD v1 at 512²; default --image-size/8 when --image-size is given)")
	cmd.Flags().IntVar(&contextTokens, "context-tokens", 0, "the UNet's text context length (default: 77, CLIP's, or 12 for a 32-wide context, the fmnist-tiny encoder's)")
	cmd.Flags().StringVar(&steps, "steps", "50", "sampling steps (respacing spec)")
	cmd.Flags().StringVar(&method, "method", "none", "acceleration method (see `runbench methods`)")
	cmd.Flags().StringArrayVar(&params, "param", nil, "method parameter name=value (repeatable)")
	cmd.Flags().IntVar(&images, "images", 1, "images per model call")
	cmd.Flags().Float64Var(&cfg, "cfg", 1.5, "guidance scale (> 1 doubles the rows, as the papers count)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&calFile, "calibration", "", "calibration `FILE` (runbench calibrate) for the methods whose schedule is calibrated (magcache)")
	return cmd
}

// dryRun counts a method's FLOPs on a configuration without running the network.
func dryRun(c archConfig, sampler, method string, raw map[string]string, steps string, rows int, cal *methods.Calibration) (*methods.Trace, error) {
	tr, err := runner.DryRun(c, sampler, steps, method, raw, methods.Env{Rows: rows, Calibration: cal})
	if err != nil && strings.HasPrefix(err.Error(), "steps") {
		return nil, fmt.Errorf("--%w", err)
	}
	return tr, err
}

// unetArch loads the UNet the flags name and wraps it for latent×latent latents and a text
// context of tokens tokens (the FLOPs of the cross-attention depend on it).
func (f *modelFlags) unetArch(cmd *cobra.Command, latent, tokens int) (archConfig, error) {
	if latent == 0 {
		if !cmd.Flags().Changed("image-size") {
			return nil, fmt.Errorf("--latent: give the UNet's latent side (64 for SD v1 at 512², 16 for the Fashion-MNIST UNet), or --image-size")
		}
		latent = f.imageSize / 8
	}
	var m *unet.Model
	var err error
	if f.preset == "SD-v1" && f.weights == "" {
		// FLOPs need the blocks, not the weights.
		m, err = unet.Shape(unet.SDv1)
	} else {
		m, err = f.loadUNet(cmd)
	}
	if err != nil {
		return nil, err
	}
	d, err := unet.NewDenoiser(m, latent)
	if err != nil {
		return nil, fmt.Errorf("--latent: %w", err)
	}
	if tokens == 0 {
		tokens = 77 // CLIP ViT-L/14's context, Stable Diffusion v1's
		if m.ContextDim == captions.TinyWidth {
			tokens = captions.TinyMaxLen
		}
	}
	if tokens < 1 {
		return nil, fmt.Errorf("--context-tokens %d: want ≥ 1", tokens)
	}
	if err := d.SetContexts(make([]float32, tokens*m.ContextDim), make([]float32, tokens*m.ContextDim)); err != nil {
		return nil, err
	}
	return unetArch{d, fmt.Sprintf("%s, latent %dx%dx%d, context %d tokens", m.Config, m.InChannels, latent, latent, tokens)}, nil
}

// unetArch is a UNet denoiser as `runbench flops` describes it.
type unetArch struct {
	*unet.Denoiser
	name string
}

func (a unetArch) String() string { return a.name }

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
