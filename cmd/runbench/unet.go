package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/unet"
)

// unetKeyPrefixes start the keys of a UNet checkpoint: LDM names, a whole SD checkpoint, diffusers.
var unetKeyPrefixes = []string{"input_blocks.", "model.diffusion_model.", "down_blocks."}

// isUNet reports whether the flags name Stable Diffusion's UNet: --model unet, or weights whose
// keys are a UNet's (read from the header alone for safetensors).
func (f *modelFlags) isUNet() (bool, error) {
	switch f.family {
	case "unet":
		return true, nil
	case "":
	default:
		return false, nil
	}
	if f.weights == "" || f.preset != "" {
		return false, nil
	}
	keys, err := checkpoint.Keys(f.weights)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		for _, p := range unetKeyPrefixes {
			if strings.HasPrefix(k, p) {
				return true, nil
			}
		}
	}
	return false, nil
}

// loadUNet builds the UNet the flags name (--heads: num_heads, SD v1's when 0).
func (f *modelFlags) loadUNet(cmd *cobra.Command) (*unet.Model, error) {
	if f.weights == "" {
		return nil, fmt.Errorf("--model unet needs --weights (a UNet or SD checkpoint)")
	}
	if f.preset != "" {
		return nil, fmt.Errorf("--preset %q: the UNet is read off its --weights", f.preset)
	}
	heads := f.heads
	if heads == 0 {
		heads = unet.DefaultHeads
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	b, err := engine.New(backendCfg)
	if err != nil {
		return nil, err
	}
	return unet.Load(b, f.weights, heads)
}

// replayUNet is `runbench sample --replay` for Stable Diffusion's UNet: it reads x_T
// [B, C, S, S], cond [B, L, D] and (with CFG) uncond [B, L, D] from a golden file (the layout of
// testdata/sd-unet/plms.safetensors), samples with PLMS and CFG on every ε channel, and writes
// under the golden's names per call call_k_t and call_k_eps_cfg (the images' guided ε), per step
// x_i and pred_x0_i (i counts up from the noisiest step), and final.
func replayUNet(ctx context.Context, m *unet.Model, kind diffusion.Kind, sf sampleFlags) error {
	switch {
	case sf.out == "":
		return fmt.Errorf("--replay needs --out")
	case kind != diffusion.PLMS:
		return fmt.Errorf("--sampler %s: the UNet replays PLMS (--sampler plms), Stable Diffusion v1's sampler", kind)
	case sf.compare:
		return fmt.Errorf("--compare: the UNet replay writes its states; compare them with the golden file")
	}
	steps, err := strconv.Atoi(sf.steps)
	if err != nil {
		return fmt.Errorf("--steps %q: PLMS takes a plain step count", sf.steps)
	}
	p, err := diffusion.NewPLMS(steps)
	if err != nil {
		return fmt.Errorf("--steps: %w", err)
	}
	f, err := checkpoint.Load(sf.replay)
	if err != nil {
		return err
	}
	xt, err := f.Get("x_T")
	if err != nil {
		return err
	}
	if len(xt.Shape) != 4 || xt.Shape[1] != m.InChannels || xt.Shape[2] != xt.Shape[3] {
		return fmt.Errorf("%s: x_T has shape %v, want [B, %d, S, S] for %s", f.Path, xt.Shape, m.InChannels, m.Config)
	}
	xT, err := xt.Float32()
	if err != nil {
		return fmt.Errorf("%s: x_T: %w", f.Path, err)
	}
	images, size := xt.Shape[0], xt.Shape[2]
	d, err := unet.NewDenoiser(m, size)
	if err != nil {
		return err
	}
	cond, err := unetContext(f, "cond", images, m.ContextDim)
	if err != nil {
		return err
	}
	null := make([]float32, len(cond)/images) // unused without CFG: the table needs one
	if sf.cfg > 1 {
		uncond, err := unetContext(f, "uncond", images, m.ContextDim)
		if err != nil {
			return err
		}
		if len(uncond) != len(cond) {
			return fmt.Errorf("%s: uncond and cond differ in length", f.Path)
		}
		per := len(uncond) / images
		for b := 1; b < images; b++ {
			if !slices.Equal(uncond[:per], uncond[b*per:(b+1)*per]) {
				return fmt.Errorf("%s: uncond row %d differs from row 0: one unconditional context (of \"\") serves every image", f.Path, b)
			}
		}
		null = uncond[:per]
	}
	if err := d.SetContexts(cond, null); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	rows := images
	if sf.cfg > 1 {
		rows = 2 * images
	}
	pol, cache, err := sf.policy(d, p.Steps(), rows, seq(images))
	if err != nil {
		return err
	}
	if sf.method == "dato" {
		draws, err := datoDraws(f, sf.replay, rows, d.Layout().Tokens)
		if err != nil {
			return err
		}
		if err := methods.Replay(pol, draws); err != nil {
			return err
		}
	}
	raw := &rawOut{Denoiser: d}
	var tr *methods.UNetTrace
	if sf.trace != "" {
		if tr, err = methods.NewUNetTrace(d.Layout()); err != nil {
			return err
		}
	}
	req := harness.Request{Sampler: kind, PLMS: p, CFGScale: float32(sf.cfg), GuideChannels: diffusion.GuidanceAll,
		XInit: xT, Labels: toInt64(seq(images)), Policy: pol, Cache: cache}
	spec := d.Spec()
	per := spec.Channels * spec.Height * spec.Width
	shape := []int{images, spec.Channels, spec.Height, spec.Width}
	outs := map[string]*checkpoint.Tensor{}
	full := hook.FullPlan(d.Layout())
	var tm harness.Timing
	req.OnStep = func(s harness.StepInfo) error {
		tm.Add(s, d, full)
		if tr != nil {
			tr.Record(s.Call, s.Timestep, s.Plan, methods.Events(pol))
		}
		// The raw ε of every row in ldm's order ([uncond…, cond…] under CFG), as the golden's eps_raw.
		rawLDM := raw.last
		if sf.cfg > 1 {
			rawLDM = append(slices.Clone(raw.last[images*per:]), raw.last[:images*per]...)
		}
		outs[fmt.Sprintf("call_%d_eps_raw", s.Call)] = checkpoint.NewF32(rawLDM, append([]int{rows}, shape[1:]...)...)
		ts := make([]int64, s.Rows)
		for j := range ts {
			ts[j] = s.Timestep
		}
		outs[fmt.Sprintf("call_%d_t", s.Call)] = checkpoint.NewI64(ts, len(ts))
		outs[fmt.Sprintf("call_%d_eps_cfg", s.Call)] = checkpoint.NewF32(slices.Clone(s.ModelOut[:images*per]), shape...)
		if s.Complete {
			i := p.Steps() - 1 - s.Step // the golden counts steps up
			outs[fmt.Sprintf("x_%d", i)] = checkpoint.NewF32(slices.Clone(s.X[:images*per]), shape...)
			outs[fmt.Sprintf("pred_x0_%d", i)] = checkpoint.NewF32(slices.Clone(s.PredXStart[:images*per]), shape...)
		}
		return nil
	}
	res, err := harness.Sample(ctx, raw, req)
	if err != nil {
		return err
	}
	if tr != nil {
		if err := tr.Write(sf.trace); err != nil {
			return err
		}
	}
	tm.Images = images
	tm.Report(os.Stderr, sf.method, nil)
	outs["final"] = checkpoint.NewF32(res.Sample, shape...)
	outs["ddim_timesteps"] = checkpoint.NewI64(p.DDIMTimesteps(), p.Steps())
	meta := map[string]string{"producer": "runbench sample --replay", "replay": sf.replay, "sampler": string(kind),
		"steps": sf.steps, "cfg": fmt.Sprint(sf.cfg), "model": m.Config.String(), "method": sf.method}
	return checkpoint.WriteSafetensors(sf.out, outs, meta)
}

// unetContext reads a file's text context [B, L, dim] of B images.
func unetContext(f *checkpoint.File, name string, images, dim int) ([]float32, error) {
	t, err := f.Get(name)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 3 || t.Shape[0] != images || t.Shape[2] != dim {
		return nil, fmt.Errorf("%s: %s has shape %v, want [%d, L, %d] (a text context per image)", f.Path, name, t.Shape, images, dim)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.Path, name, err)
	}
	return v, nil
}

// rawOut keeps the UNet's raw output of the last call (the sampler guides it in place).
type rawOut struct {
	*unet.Denoiser
	last []float32
}

func (r *rawOut) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	out, err := r.Denoiser.Forward(x, t, y, opt)
	r.last = slices.Clone(out)
	return out, err
}

// datoDraws reads DaTo's recorded draws for a replay: every prune event's noise prune_{j}_noise
// [rows, N] from the replay file (ldm's row order, [uncond…, cond…], put into the harness's
// [cond…, null…]) and the coin flips prune[j].sign_draw from actions.json beside it.
func datoDraws(f *checkpoint.File, replay string, rows, tokens int) (*methods.PruneDraws, error) {
	path := filepath.Join(filepath.Dir(replay), "actions.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--method dato --replay needs the recorded coin flips in actions.json beside %s (prune[j].sign_draw): %w", replay, err)
	}
	var act struct {
		Prune []struct {
			Sign *float64 `json:"sign_draw"`
		} `json:"prune"`
	}
	if err := json.Unmarshal(data, &act); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &methods.PruneDraws{}
	for j, ev := range act.Prune {
		if ev.Sign == nil {
			return nil, fmt.Errorf("%s: prune[%d] has no sign_draw", path, j)
		}
		t, err := f.Get(fmt.Sprintf("prune_%d_noise", j))
		if err != nil {
			return nil, err
		}
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != tokens {
			return nil, fmt.Errorf("%s: prune_%d_noise has shape %v, want [%d, %d] (rows, full-resolution tokens)", f.Path, j, t.Shape, rows, tokens)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("%s: prune_%d_noise: %w", f.Path, j, err)
		}
		noise := make([][]float32, rows)
		for r := range noise {
			src := (r + rows/2) % rows // ours [cond…, null…] ← ldm [uncond…, cond…]
			if rows%2 != 0 {
				src = r
			}
			noise[r] = v[src*tokens : (src+1)*tokens]
		}
		d.Noise, d.Sign = append(d.Noise, noise), append(d.Sign, *ev.Sign)
	}
	return d, nil
}
