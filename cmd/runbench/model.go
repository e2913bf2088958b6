package main

import (
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
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
