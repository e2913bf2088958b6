package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/pixart"
)

// pixartCaptions reads caption features y [B, 1, L, C] (or [B, L, C]) and their attention mask
// [B, L] (valid tokens first) from a file, checked against the model.
func pixartCaptions(f *checkpoint.File, m *pixart.Model, yName, maskName string) (feats []float32, lens []int, err error) {
	yt, err := f.Get(yName)
	if err != nil {
		return nil, nil, err
	}
	L, C := m.MaxLength, m.CaptionChannels
	shape := slices.DeleteFunc(slices.Clone(yt.Shape), func(d int) bool { return d == 1 })
	if len(yt.Shape) < 3 || yt.Shape[len(yt.Shape)-1] != C || yt.Shape[len(yt.Shape)-2] != L || len(shape) > 3 {
		return nil, nil, fmt.Errorf("%s: %s has shape %v, want [B, 1, %d, %d] (captions of %d tokens × %d features for %s)", f.Path, yName, yt.Shape, L, C, L, C, m.Config)
	}
	if feats, err = yt.Float32(); err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", f.Path, yName, err)
	}
	B := len(feats) / (L * C)
	mt, err := f.Get(maskName)
	if err != nil {
		return nil, nil, err
	}
	mask, err := mt.Int64()
	if err != nil || len(mask) != B*L {
		return nil, nil, fmt.Errorf("%s: %s must be %d×%d integers (1 = caption token, 0 = padding)", f.Path, maskName, B, L)
	}
	lens = make([]int, B)
	for b := range B {
		for j, v := range mask[b*L : (b+1)*L] {
			switch {
			case v == 1 && j == lens[b]:
				lens[b]++
			case v != 0:
				return nil, nil, fmt.Errorf("%s: %s row %d: valid tokens must come first, as 1s then 0s", f.Path, maskName, b)
			}
		}
		if lens[b] == 0 {
			return nil, nil, fmt.Errorf("%s: %s row %d has no caption token", f.Path, maskName, b)
		}
	}
	return feats, lens, nil
}

// forwardPixArt is `runbench forward` for PixArt-α: inputs x, t (model times, may be
// fractional), y [B, 1, L, C] and mask [B, L]; outputs out and, with intermediates, the golden
// files' names (t_freq, t_emb, t_block, x_embed, y_proj, block0_attn_raw, …, block_k, final_tokens).
func forwardPixArt(m *pixart.Model, in, out string, intermediates bool) error {
	f, err := checkpoint.Load(in)
	if err != nil {
		return err
	}
	xt, err := f.Get("x")
	if err != nil {
		return err
	}
	x, err := xt.Float32()
	if err != nil {
		return fmt.Errorf("%s: x: %w", in, err)
	}
	tt, err := f.Get("t")
	if err != nil {
		return err
	}
	ts, err := tt.Float64()
	if err != nil {
		return fmt.Errorf("%s: t: %w", in, err)
	}
	for i, v := range ts {
		if v < 0 || v > 999 || math.IsNaN(v) {
			return fmt.Errorf("%s: t[%d] = %g: want a model time in [0, 999]", in, i, v)
		}
	}
	feats, lens, err := pixartCaptions(f, m, "y", "mask")
	if err != nil {
		return err
	}
	if len(lens) != len(ts) {
		return fmt.Errorf("%s: %d captions for %d timesteps", in, len(lens), len(ts))
	}
	results := map[string]*checkpoint.Tensor{}
	var opt hook.Options
	if intermediates {
		opt.Probe = func(name string, v *tensors.Tensor) {
			results[name] = checkpoint.NewF32(tensors.MustCopyFlatData[float32](v), v.Shape().Dimensions...)
		}
	}
	o, err := m.ForwardCaptions(x, ts, pixart.Inputs{Captions: feats, Lengths: lens}, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	spec := m.Spec()
	results["out"] = checkpoint.NewF32(o, len(ts), spec.OutChannels(), spec.Height, spec.Width)
	return checkpoint.WriteSafetensors(out, results, map[string]string{"producer": "runbench forward", "model": m.Config.String()})
}

// replayPixArt is `runbench sample --replay` for PixArt-α: it reads a golden sampling file's
// x_init [B, C, H, W], y_cond and y_null [B, 1, L, C] and mask [B, L], samples with
// DPM-Solver++ and CFG in PixArt's way (the null caption with the prompt's mask), and writes per
// call x_k, x0_k and eps_k (the guided ε of the images) and the final sample under the golden's
// names. The trace counts steps up, as the official PixArt code does.
func replayPixArt(ctx context.Context, m *pixart.Model, kind diffusion.Kind, solver *diffusion.DPMSolver, sf sampleFlags) error {
	if sf.out == "" {
		return fmt.Errorf("--replay needs --out")
	}
	if kind != diffusion.DPMSolverPP {
		return fmt.Errorf("--sampler %s: PixArt-α replays sample with dpmpp (DPM-Solver++), as its inference does", kind)
	}
	f, err := checkpoint.Load(sf.replay)
	if err != nil {
		return err
	}
	spec := m.Spec()
	xt, err := f.Get("x_init")
	if err != nil {
		return err
	}
	if len(xt.Shape) != 4 || xt.Shape[1] != m.InChannels || xt.Shape[2] != m.InputSize || xt.Shape[3] != m.InputSize {
		return fmt.Errorf("%s: x_init has shape %v, want [B, %d, %d, %d] for %s", f.Path, xt.Shape, m.InChannels, m.InputSize, m.InputSize, m.Config)
	}
	xInit, err := xt.Float32()
	if err != nil {
		return fmt.Errorf("%s: x_init: %w", f.Path, err)
	}
	images := xt.Shape[0]
	feats, lens, err := pixartCaptions(f, m, "y_cond", "mask")
	if err != nil {
		return err
	}
	if len(lens) != images {
		return fmt.Errorf("%s: %d captions for %d images", f.Path, len(lens), images)
	}
	caps := &pixart.Captions{Features: feats, Lengths: lens}
	if yn, ok := f.Tensors["y_null"]; ok {
		null, err := yn.Float32()
		if err != nil || len(null) != len(feats) {
			return fmt.Errorf("%s: y_null must have the shape of y_cond", f.Path)
		}
		per := m.MaxLength * m.CaptionChannels
		for b := 1; b < images; b++ {
			if !slices.Equal(null[:per], null[b*per:(b+1)*per]) {
				return fmt.Errorf("%s: y_null row %d differs from row 0: one null caption serves every image", f.Path, b)
			}
		}
		caps.Null = null[:per]
	}
	if err := m.SetCaptions(caps); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	spec = m.Spec()
	per := spec.Channels * spec.Height * spec.Width
	rows := images
	if sf.cfg > 1 {
		rows = 2 * images
	}
	pol, cache, err := sf.policy(m, solver.Steps(), rows, seq(images))
	if err != nil {
		return err
	}
	req := harness.Request{Sampler: kind, Solver: solver, CFGScale: float32(sf.cfg), GuideChannels: diffusion.GuidanceAll,
		XInit: xInit, Labels: toInt64(seq(images)), Policy: pol, Cache: cache, Tokens: sf.trace != ""}
	tr := &methods.Trace{Method: sf.method, NumSteps: solver.Steps(), Sampler: string(kind), CFGScale: sf.cfg,
		TokensPerRow: m.Tokens(), BatchRows: rows, TimestepMap: solver.TimestepMap()}
	outs := map[string]*checkpoint.Tensor{}
	shape := []int{images, spec.Channels, spec.Height, spec.Width}
	full := hook.FullPlan(m.Layout())
	var tm harness.Timing
	req.OnStep = func(s harness.StepInfo) error {
		p := s.Plan
		if p == nil {
			p = full
		}
		tr.Record(s.Call, s.Call, s.Time, p, pol.Notes(), hook.ExecutedFLOPs(m, p, s.Rows), m.Tokens())
		tm.Add(s, m, full)
		outs[fmt.Sprintf("x_%03d", s.Call)] = checkpoint.NewF32(slices.Clone(s.X[:images*per]), shape...)
		outs[fmt.Sprintf("x0_%03d", s.Call)] = checkpoint.NewF32(slices.Clone(s.PredXStart[:images*per]), shape...)
		eps, err := diffusion.EpsChannels(s.ModelOut[:images*spec.OutChannels()*spec.Height*spec.Width], images, spec.OutChannels(), spec.Channels)
		if err != nil {
			return err
		}
		outs[fmt.Sprintf("eps_%03d", s.Call)] = checkpoint.NewF32(eps, shape...)
		return nil
	}
	res, err := harness.Sample(ctx, m, req)
	if err != nil {
		return err
	}
	tm.Images = images
	tm.Report(os.Stderr, sf.method, nil)
	if sf.trace != "" {
		officialRows(tr, images, rows)
		if err := tr.Write(sf.trace); err != nil {
			return err
		}
	}
	outs["sample"] = checkpoint.NewF32(res.Sample, shape...)
	mt := make([]float32, solver.Steps())
	for k := range mt {
		mt[k] = solver.ModelTime(k)
	}
	outs["model_t"] = checkpoint.NewF32(mt, len(mt))
	meta := map[string]string{"producer": "runbench sample --replay", "replay": sf.replay, "sampler": string(kind),
		"steps": sf.steps, "cfg": fmt.Sprint(sf.cfg), "model": m.Config.String(), "method": sf.method}
	return checkpoint.WriteSafetensors(sf.out, outs, meta)
}

func toInt64(xs []int) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}

// officialRows puts the trace's token rows in the official wrapper's CFG layout, [uncond | cond]
// (the harness's is [cond | null]), so that the trace diffs against the official one line by line.
func officialRows(tr *methods.Trace, images, rows int) {
	if rows != 2*images {
		return
	}
	swap := func(r [][]int32) [][]int32 {
		if len(r) != rows {
			return r
		}
		return append(slices.Clone(r[images:]), r[:images]...)
	}
	for _, c := range tr.Calls {
		for i := range c.Layers {
			l := &c.Layers[i]
			for _, m := range []*methods.TraceModule{&l.Attn, l.Cross, &l.MLP} {
				if m != nil {
					m.FreshRaw, m.FreshSorted = swap(m.FreshRaw), swap(m.FreshSorted)
				}
			}
		}
	}
}
