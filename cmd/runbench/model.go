package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

// modelFlags are the flags that pick a DiT and its weights.
type modelFlags struct {
	weights   string
	heads     int
	preset    string
	imageSize int
}

func (f *modelFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.weights, "weights", "", "checkpoint: safetensors or PyTorch .pt (state dict, or training checkpoint whose EMA weights are used)")
	cmd.Flags().IntVar(&f.heads, "heads", 0, "attention heads (cannot be read off the weights; or give --preset)")
	cmd.Flags().StringVar(&f.preset, "preset", "", "named architecture, e.g. DiT-XL/2 (gives the heads; the weights must match it); with no --weights, random weights")
	cmd.Flags().IntVar(&f.imageSize, "image-size", 256, "image size in pixels for --preset (latent = size/8)")
}

// config resolves the architecture without loading weights onto a backend (FLOPs counting).
func (f *modelFlags) config() (dit.Config, error) {
	if f.weights == "" {
		if f.preset == "" {
			return dit.Config{}, fmt.Errorf("give --preset (or --weights with --heads)")
		}
		c, err := dit.Preset(f.preset, f.imageSize)
		if err != nil {
			return dit.Config{}, fmt.Errorf("--preset: %w", err)
		}
		if f.heads != 0 && f.heads != c.Heads {
			return dit.Config{}, fmt.Errorf("--heads %d contradicts --preset %s (%d heads)", f.heads, f.preset, c.Heads)
		}
		return c, nil
	}
	if f.heads <= 0 {
		return dit.Config{}, fmt.Errorf("--heads is required with --weights (or give --preset)")
	}
	file, err := checkpoint.Load(f.weights)
	if err != nil {
		return dit.Config{}, err
	}
	return dit.InferConfig(file, f.heads)
}

// load builds the model on the selected backend.
func (f *modelFlags) load(cmd *cobra.Command) (*dit.Model, error) {
	backendCfg, _ := cmd.Flags().GetString("backend")
	var preset *dit.Config
	if f.preset != "" {
		c, err := dit.Preset(f.preset, f.imageSize)
		if err != nil {
			return nil, fmt.Errorf("--preset: %w", err)
		}
		preset = &c
		if f.heads == 0 {
			f.heads = c.Heads
		} else if f.heads != c.Heads {
			return nil, fmt.Errorf("--heads %d contradicts --preset %s (%d heads)", f.heads, f.preset, c.Heads)
		}
	}
	var file *checkpoint.File
	var cfg dit.Config
	switch {
	case f.weights == "" && preset == nil:
		return nil, fmt.Errorf("--weights is required (or --preset for random weights)")
	case f.weights == "":
		cfg = *preset
		file = dit.RandomWeights(cfg, 0)
	default:
		if f.heads <= 0 {
			return nil, fmt.Errorf("--heads is required with --weights (the number of heads cannot be read off the weights), or give --preset")
		}
		var err error
		if file, err = checkpoint.Load(f.weights); err != nil {
			return nil, err
		}
		if cfg, err = dit.InferConfig(file, f.heads); err != nil {
			return nil, err
		}
		if preset != nil && (cfg.Depth != preset.Depth || cfg.Hidden != preset.Hidden || cfg.PatchSize != preset.PatchSize || cfg.InputSize != preset.InputSize) {
			return nil, fmt.Errorf("%s holds %s, which is not --preset %s at --image-size %d (%s)", f.weights, cfg, f.preset, f.imageSize, *preset)
		}
	}
	b, err := engine.New(backendCfg)
	if err != nil {
		return nil, err
	}
	return dit.New(b, cfg, file)
}
