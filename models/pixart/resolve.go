package pixart

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// RandomWeightsID is what a run records as the weights of a PixArt-α built without a checkpoint.
const RandomWeightsID = "random-seed-0"

// PresetName is the one named architecture (PixArt-XL/2; the image size picks 256/512/1024).
const PresetName = "PixArt-XL/2"

// IsCheckpoint reports whether a state dict's keys are PixArt-α's (official or diffusers layout).
func IsCheckpoint(keys []string) bool {
	for _, k := range keys {
		k = strings.TrimPrefix(k, "transformer.")
		if k == "t_block.1.weight" || k == "adaln_single.linear.weight" {
			return true
		}
	}
	return false
}

// Source names a PixArt-α the way a user does: the preset at an image size (random weights), or
// a checkpoint (heads: 0 = PixArt-XL's; image size: 0 = from the weights). Prefix is how the
// caller spells its keys in errors.
type Source struct {
	Preset    string
	ImageSize int
	Weights   string
	Heads     int
	Prefix    string
}

// Resolved is a PixArt-α whose architecture is known, ready to load onto a backend.
type Resolved struct {
	Config  Config
	Weights string // the checkpoint file's sha256, or RandomWeightsID
	file    *checkpoint.File
}

// Resolve works out a source's architecture (reading the checkpoint, kept for Load) and weights identity.
func Resolve(s Source) (*Resolved, error) {
	key := func(k string) string { return s.Prefix + k }
	if s.Weights == "" {
		if s.Preset != PresetName {
			return nil, fmt.Errorf("give %s or %s %s (random weights)", key("weights"), key("preset"), PresetName)
		}
		c, err := Preset(s.ImageSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key("image-size"), err)
		}
		if s.Heads != 0 && s.Heads != c.Heads {
			return nil, fmt.Errorf("%s %d contradicts %s %s (%d heads)", key("heads"), s.Heads, key("preset"), PresetName, c.Heads)
		}
		return &Resolved{Config: c, Weights: RandomWeightsID}, nil
	}
	if s.Preset != "" && s.Preset != PresetName {
		return nil, fmt.Errorf("%s %q: PixArt-α knows only %s", key("preset"), s.Preset, PresetName)
	}
	hash, err := checkpoint.FileHash(s.Weights)
	if err != nil {
		return nil, err
	}
	f, err := checkpoint.Load(s.Weights)
	if err != nil {
		return nil, err
	}
	if f, err = officialLayout(f); err != nil {
		return nil, err
	}
	c, err := InferConfig(f, s.Heads, s.ImageSize)
	if err != nil {
		return nil, err
	}
	return &Resolved{Config: c, Weights: hash, file: f}, nil
}

// Load puts the model on a backend (random weights, seed 0, without a checkpoint).
func (r *Resolved) Load(b backends.Backend) (*Model, error) {
	f := r.file
	if f == nil {
		f = RandomWeights(r.Config, 0)
	}
	r.file = nil // the weights now live on the backend
	return New(b, r.Config, f)
}

// RandomWeights returns a state dict in the official layout with N(0, 0.05²) parameters (the
// null caption N(0, 1)): an untrained model for benchmarks and tests.
func RandomWeights(c Config, seed uint64) *checkpoint.File {
	shapes := c.ExpectedShapes()
	delete(shapes, "pos_embed") // recomputed
	return checkpoint.Random(shapes, seed, 0x91a7, func(k string, _ []int, n int, r *rand.Rand) []float32 {
		if k == "y_embedder.y_embedding" {
			return checkpoint.Normal(1, n, r)
		}
		return checkpoint.Normal(0.05, n, r)
	})
}
