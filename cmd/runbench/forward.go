package main

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/models/checkpoint"
)

func newForwardCmd() *cobra.Command {
	var mf modelFlags
	var in, out string
	var cfgScale float64
	var guideAll, intermediates bool
	cmd := &cobra.Command{
		Use:   "forward --weights W --heads H --inputs IN.safetensors --out OUT.safetensors",
		Short: "Run one model forward on stored inputs (compare with any PyTorch implementation)",
		Long: `Reads x (F32, NCHW), t (I64, original 0..999 timesteps) and y (I64 labels; the null label is
the number of classes) from --inputs and writes out = model(x, t, y) in the reference layout.
If the inputs also hold x_cfg, t_cfg, y_cfg and --cfg is given, also writes out_cfg =
forward_with_cfg(x_cfg, t_cfg, y_cfg, cfg) (guidance on channels 0-2 as the reference, or on all
ε channels with --guide-all). --intermediates also writes every named intermediate of the
x/t/y pass (x_embed, t_freq, c, block0_adaln, block_0 ..., final_tokens).

PixArt-α (--model pixart, or weights that are PixArt-α's): the inputs are x, t (model times,
fractional allowed), y [B, 1, L, C] caption features and mask [B, L] (1 = caption token, valid
tokens first); the intermediates are named as in testdata/pixart/README.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return fmt.Errorf("--inputs and --out are required")
			}
			if isPixArt, err := mf.isPixArt(); err != nil {
				return err
			} else if isPixArt {
				m, err := mf.loadPixArt(cmd)
				if err != nil {
					return err
				}
				return forwardPixArt(m, in, out, intermediates)
			}
			m, err := mf.load(cmd)
			if err != nil {
				return err
			}
			f, err := checkpoint.Load(in)
			if err != nil {
				return err
			}
			x, t, y, err := readXTY(f, "x", "t", "y")
			if err != nil {
				return err
			}
			for i, v := range t {
				// The model was trained on the timesteps of its 1000-step schedule; the sinusoid would
				// take any number, silently.
				if v < 0 || v > 999 || math.IsNaN(v) {
					return fmt.Errorf("%s: t[%d] = %g: want a timestep of the 1000-step schedule, 0..999", in, i, v)
				}
			}
			results := map[string]*checkpoint.Tensor{}
			var opt hook.Options
			if intermediates {
				opt.Probe = func(name string, v *tensors.Tensor) {
					results[name] = checkpoint.NewF32(tensors.MustCopyFlatData[float32](v), v.Shape().Dimensions...)
				}
			}
			o, err := m.Forward(x.data, t, y, opt)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			spec := m.Spec()
			results["out"] = checkpoint.NewF32(o, len(t), spec.OutChannels(), spec.Height, spec.Width)
			if _, ok := f.Tensors["x_cfg"]; ok && cmd.Flags().Changed("cfg") {
				xc, tc, yc, err := readXTY(f, "x_cfg", "t_cfg", "y_cfg")
				if err != nil {
					return err
				}
				if len(tc)%2 != 0 {
					return fmt.Errorf("%s: x_cfg has %d rows; CFG needs cond and null halves", in, len(tc))
				}
				per := len(xc.data) / len(tc)
				half := xc.data[:len(xc.data)/2]
				combined := append(append(make([]float32, 0, len(xc.data)), half...), half...)
				_ = per
				oc, err := m.Forward(combined, tc, yc, hook.Options{})
				if err != nil {
					return fmt.Errorf("%s (cfg inputs): %w", in, err)
				}
				guide := harness.DefaultGuideChannels
				if guideAll {
					guide = diffusion.GuidanceAll
				}
				if err := diffusion.GuideCFG(oc, len(tc), spec.OutChannels(), spec.Channels, guide, float32(cfgScale)); err != nil {
					return err
				}
				results["out_cfg"] = checkpoint.NewF32(oc, len(tc), spec.OutChannels(), spec.Height, spec.Width)
			}
			return checkpoint.WriteSafetensors(out, results, map[string]string{"producer": "runbench forward", "model": m.Config.String()})
		},
	}
	mf.register(cmd)
	cmd.Flags().StringVar(&in, "inputs", "", "safetensors file with x, t, y (and optionally x_cfg, t_cfg, y_cfg)")
	cmd.Flags().StringVar(&out, "out", "", "safetensors file to write")
	cmd.Flags().Float64Var(&cfgScale, "cfg", 1, "guidance scale for the x_cfg inputs")
	cmd.Flags().BoolVar(&guideAll, "guide-all", false, "guide all ε channels (diffusers) instead of channels 0-2 (DiT reference)")
	cmd.Flags().BoolVar(&intermediates, "intermediates", false, "also write the named intermediates of the x/t/y pass")
	return cmd
}

type f32Tensor struct {
	data  []float32
	shape []int
}

// readXTY reads an image batch, its timesteps and labels, checking their shapes agree.
func readXTY(f *checkpoint.File, xn, tn, yn string) (f32Tensor, []float64, []int64, error) {
	get := func(name string, rank int) (*checkpoint.Tensor, error) {
		t, err := f.Get(name)
		if err != nil {
			return nil, err
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("%s: %q has shape %v, want rank %d", f.Path, name, t.Shape, rank)
		}
		return t, nil
	}
	xt, err := get(xn, 4)
	if err != nil {
		return f32Tensor{}, nil, nil, err
	}
	x, err := xt.Float32()
	if err != nil {
		return f32Tensor{}, nil, nil, fmt.Errorf("%s: %q: %w", f.Path, xn, err)
	}
	tt, err := get(tn, 1)
	if err != nil {
		return f32Tensor{}, nil, nil, err
	}
	yt, err := get(yn, 1)
	if err != nil {
		return f32Tensor{}, nil, nil, err
	}
	ts, err := tt.Float64()
	if err != nil {
		return f32Tensor{}, nil, nil, fmt.Errorf("%s: %q: %w", f.Path, tn, err)
	}
	ys, err := yt.Int64()
	if err != nil {
		return f32Tensor{}, nil, nil, fmt.Errorf("%s: %q must hold integer labels: %w", f.Path, yn, err)
	}
	if xt.Shape[0] != len(ts) || len(ys) != len(ts) {
		return f32Tensor{}, nil, nil, fmt.Errorf("%s: %q has %d rows, %q %d and %q %d (want equal)", f.Path, xn, xt.Shape[0], tn, len(ts), yn, len(ys))
	}
	return f32Tensor{data: x, shape: xt.Shape}, ts, ys, nil
}
