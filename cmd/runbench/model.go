package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/pixart"
)

// modelFlags are the flags that pick a model (DiT or PixArt-α) and its weights.
type modelFlags struct {
	family    string
	weights   string
	heads     int
	preset    string
	imageSize int
}

func (f *modelFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.family, "model", "", `model family: dit, pixart or unet (SD v1: runbench sample --replay and flops; experiments sweep it with [model] family = "unet") ("" = read off the weights, or the preset)`)
	cmd.Flags().StringVar(&f.weights, "weights", "", "checkpoint: safetensors or PyTorch .pt (state dict, or training checkpoint whose EMA weights are used)")
	cmd.Flags().IntVar(&f.heads, "heads", 0, "attention heads (cannot be read off the weights; or give --preset)")
	cmd.Flags().StringVar(&f.preset, "preset", "", "named architecture, e.g. DiT-XL/2 or PixArt-XL/2 (gives the heads; the weights must match it); with no --weights, random weights")
	cmd.Flags().IntVar(&f.imageSize, "image-size", 256, "image size in pixels for --preset (latent = size/8)")
}

// source is the DiT the flags name.
func (f *modelFlags) source() dit.Source {
	return dit.Source{Preset: f.preset, ImageSize: f.imageSize, Weights: f.weights, Heads: f.heads, Prefix: "--"}
}

// config resolves the architecture without loading weights onto a backend (FLOPs counting).
func (f *modelFlags) config() (dit.Config, error) {
	r, err := dit.Resolve(f.source())
	if err != nil {
		return dit.Config{}, err
	}
	return r.Config, nil
}

// load builds the model on the selected backend.
func (f *modelFlags) load(cmd *cobra.Command) (*dit.Model, error) {
	r, err := dit.Resolve(f.source())
	if err != nil {
		return nil, err
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	b, err := engine.New(backendCfg)
	if err != nil {
		return nil, err
	}
	return r.Load(b)
}

// isPixArt reports whether the flags name a PixArt-α: --model pixart, its preset, or weights
// whose keys are PixArt-α's (read from the header alone for safetensors).
func (f *modelFlags) isPixArt() (bool, error) {
	switch f.family {
	case "pixart":
		return true, nil
	case "dit":
		return false, nil
	case "":
	default:
		if f.family == "unet" {
			return false, fmt.Errorf("--model unet: this command runs dit or pixart; the UNet replays golden files with runbench sample --replay, counts FLOPs with runbench flops, and is swept by runbench run (an experiment with [model] family = \"unet\")")
		}
		return false, fmt.Errorf("--model %q: want dit or pixart (or unet with runbench sample --replay)", f.family)
	}
	if f.preset == pixart.PresetName {
		return true, nil
	}
	if f.weights == "" || f.preset != "" {
		return false, nil
	}
	keys, err := checkpoint.Keys(f.weights)
	if err != nil {
		return false, err
	}
	return pixart.IsCheckpoint(keys), nil
}

// loadPixArt builds the PixArt-α the flags name on the selected backend (--image-size only
// with --preset: a checkpoint's pos_embed gives the resolution).
func (f *modelFlags) loadPixArt(cmd *cobra.Command) (*pixart.Model, error) {
	size := 0
	if f.preset != "" || cmd.Flags().Changed("image-size") {
		size = f.imageSize
	}
	r, err := pixart.Resolve(pixart.Source{Preset: f.preset, ImageSize: size, Weights: f.weights, Heads: f.heads, Prefix: "--"})
	if err != nil {
		return nil, err
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	b, err := engine.New(backendCfg)
	if err != nil {
		return nil, err
	}
	return r.Load(b)
}
