package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

// sampleConfig is everything that changes the generated samples; its hash keys the run.
type sampleConfig struct {
	Kind       string         `json:"kind"`
	Model      string         `json:"model"`
	Weights    string         `json:"weights_sha256"`
	Method     string         `json:"method"`
	Params     map[string]any `json:"params,omitempty"`
	Sampler    string         `json:"sampler"`
	Steps      string         `json:"steps"`
	CFG        float64        `json:"cfg_scale"`
	Guide      int            `json:"guide_channels"`
	Seed       int64          `json:"seed"`
	NumSamples int            `json:"num_samples"`
	Labels     []int64        `json:"labels,omitempty"`
	Backend    string         `json:"backend"`
}

// generate samples --num images in batches, writes each image (PNG for 1- or 3-channel pixel
// models, safetensors latents otherwise) and records the run; a rerun resumes at the first
// missing image.
func generate(ctx context.Context, cmd *cobra.Command, m *dit.Model, kind diffusion.Kind, sched *diffusion.Schedule, sf sampleFlags, mf modelFlags) error {
	spec := m.Spec()
	if sf.numImages <= 0 || sf.batch <= 0 {
		return fmt.Errorf("--num %d and --batch %d must be positive", sf.numImages, sf.batch)
	}
	var labels []int64
	if sf.labels != "" {
		var err error
		if labels, err = parseLabels(sf.labels, spec.NumClasses); err != nil {
			return err
		}
	}
	labelOf := func(i int) int64 {
		if labels != nil {
			return labels[i%len(labels)]
		}
		return int64(diffusion.Label(sf.seed, i, spec.NumClasses))
	}
	weightsHash := "random-seed-0"
	if mf.weights != "" {
		var err error
		if weightsHash, err = checkpoint.FileHash(mf.weights); err != nil {
			return err
		}
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	backendCfg = engine.Config(backendCfg)
	raw, err := methods.ParseParams(sf.params)
	if err != nil {
		return err
	}
	info, err := methods.Lookup(sf.method)
	if err != nil {
		return err
	}
	vals, err := info.Parse(raw)
	if err != nil {
		return err
	}
	conf := sampleConfig{Kind: "sample", Model: m.Config.String(), Weights: weightsHash, Method: sf.method, Params: vals, Sampler: string(kind),
		Steps: sf.steps, CFG: sf.cfg, Guide: sf.guide(), Seed: sf.seed, NumSamples: sf.numImages, Labels: labels, Backend: backendCfg}
	cj, err := store.CanonicalJSON(conf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sf.outDir, 0o755); err != nil {
		return err
	}
	dbPath := sf.db
	if dbPath == "" {
		dbPath = filepath.Join(sf.outDir, "runs.db")
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	b, _ := engine.New(backendCfg)
	run, _, err := db.EnsureRun(store.Run{ConfigJSON: string(cj), Method: sf.method, Model: conf.Model, WeightsHash: weightsHash,
		Sampler: string(kind), Steps: sched.Steps(), CFGScale: sf.cfg, Seed: sf.seed, NumSamples: sf.numImages, BatchSize: sf.batch,
		Backend: backendCfg, Device: engine.Describe(b), GitRev: gitRev()})
	if err != nil {
		return err
	}
	done, err := db.Samples(run.ID)
	if err != nil {
		return err
	}
	have := map[int]bool{}
	for _, s := range done {
		have[s.Index] = true
	}
	var todo []int
	for i := range sf.numImages {
		if !have[i] {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): all %d images already done in %s\n", run.ID, run.ConfigHash[:12], sf.numImages, dbPath)
		return db.SetStatus(run.ID, store.StatusDone)
	}
	bar := progressbar.NewOptions(len(todo), progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("sampling"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish())
	per := spec.Channels * spec.Height * spec.Width
	var tm, base timing
	full := hook.FullPlan(m.Layout())
	for start := 0; start < len(todo); start += sf.batch {
		idx := todo[start:min(start+sf.batch, len(todo))]
		B := len(idx)
		streams := make([]*diffusion.Noise, B)
		xInit := make([]float32, B*per)
		ys := make([]int64, B)
		for j, i := range idx {
			streams[j] = diffusion.NewNoise(sf.seed, i)
			streams[j].Fill(xInit[j*per : (j+1)*per])
			ys[j] = labelOf(i)
		}
		req := harness.Request{Sampler: kind, Schedule: sched, CFGScale: float32(sf.cfg), GuideChannels: sf.guide(), XInit: xInit, Labels: ys,
			Noise: func(_ int, dst []float32) error {
				// Each image's stream yields its own row, then its null-row copy: batch-independent.
				rows := len(dst) / per
				for j := range B {
					streams[j].Fill(dst[j*per : (j+1)*per])
					if rows == 2*B {
						streams[j].Fill(dst[(B+j)*per : (B+j+1)*per])
					}
				}
				return nil
			}}
		rows := B
		if sf.cfg > 1 {
			rows = 2 * B
		}
		pol, cache, err := sf.policy(m, sched.Steps(), rows, idx)
		if err != nil {
			return err
		}
		req.Policy, req.Cache = pol, cache
		var bt timing
		req.OnStep = func(s harness.StepInfo) error { bt.add(s, m, full); return nil }
		t0 := time.Now()
		res, err := harness.Sample(ctx, m, req)
		if err != nil {
			_ = db.SetStatus(run.ID, store.StatusFailed)
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted; %d images are committed in %s, rerun the same command to resume", start, dbPath)
			}
			return err
		}
		wall := time.Since(t0)
		if cache != nil {
			cache.Reset()
		}
		bt.images = B
		tm.merge(bt)
		if sf.compare && sf.method != "none" {
			bb, err := timeBaseline(ctx, m, req, sf)
			if err != nil {
				return err
			}
			base.merge(*bb)
		}
		batch := store.Batch{Index: idx[0] / sf.batch, FirstSample: idx[0], NumSamples: B, WallMS: float64(wall.Microseconds()) / 1000,
			Timings: bt.storeTimings()}
		for j, i := range idx {
			path, hash, err := writeImage(sf.outDir, i, res.Sample[j*per:(j+1)*per], spec.Channels, spec.Height, spec.Width)
			if err != nil {
				return err
			}
			label := int(ys[j])
			batch.Samples = append(batch.Samples, store.Sample{Index: i, Label: &label, NoiseSeed: sf.seed, OutputPath: path, OutputHash: hash})
		}
		if err := db.CommitBatch(run.ID, batch); err != nil {
			return err
		}
		_ = bar.Add(B)
	}
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err := db.SetStatus(run.ID, store.StatusDone); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): %d images to %s, recorded in %s (batch %d, %d graph families compiled)\n",
		run.ID, run.ConfigHash[:12], len(todo), sf.outDir, dbPath, sf.batch, m.GraphCount())
	var bp *timing
	if sf.compare && sf.method != "none" {
		bp = &base
	}
	tm.report(cmd.OutOrStdout(), sf.method, bp)
	return nil
}

// writeImage stores one sample: a PNG (DiT's conversion clamp(127.5·x + 128, 0, 255) → uint8)
// for 1- or 3-channel images, else the raw latent as safetensors. It returns the path and sha256.
func writeImage(dir string, i int, x []float32, c, h, w int) (string, string, error) {
	var path string
	if c == 1 || c == 3 {
		path = filepath.Join(dir, fmt.Sprintf("%06d.png", i))
		var img image.Image
		px := func(ch, y, xx int) uint8 {
			v := 127.5*x[(ch*h+y)*w+xx] + 128
			return uint8(max(0, min(255, v)))
		}
		if c == 1 {
			g := image.NewGray(image.Rect(0, 0, w, h))
			for y := range h {
				for xx := range w {
					g.SetGray(xx, y, color.Gray{Y: px(0, y, xx)})
				}
			}
			img = g
		} else {
			rgb := image.NewRGBA(image.Rect(0, 0, w, h))
			for y := range h {
				for xx := range w {
					rgb.SetRGBA(xx, y, color.RGBA{R: px(0, y, xx), G: px(1, y, xx), B: px(2, y, xx), A: 255})
				}
			}
			img = rgb
		}
		f, err := os.Create(path)
		if err != nil {
			return "", "", err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return "", "", fmt.Errorf("%s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return "", "", err
		}
	} else {
		path = filepath.Join(dir, fmt.Sprintf("%06d.safetensors", i))
		if err := checkpoint.WriteSafetensors(path, map[string]*checkpoint.Tensor{"latent": checkpoint.NewF32(x, c, h, w)}, nil); err != nil {
			return "", "", err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(data)
	return path, hex.EncodeToString(sum[:]), nil
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
