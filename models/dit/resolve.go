package dit

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// RandomWeightsID is what a run records as the weights of a DiT built without a checkpoint
// (RandomWeights with seed 0).
const RandomWeightsID = "random-seed-0"

// Source names a DiT the way a user does: a preset at an image size, a custom architecture, a
// checkpoint (whose number of heads must come from Heads or the preset), or a checkpoint checked
// against a preset. Prefix is how the caller spells its keys in errors ("--" for flags, "model."
// for experiment files).
type Source struct {
	Preset    string
	ImageSize int
	Arch      *Config
	Weights   string
	Heads     int
	Prefix    string
}

// Resolved is a DiT whose architecture is known, ready to load onto a backend.
type Resolved struct {
	Config  Config
	Weights string // the checkpoint file's sha256, or RandomWeightsID
	path    string
	src     Source
	file    *checkpoint.File
}

// Resolve works out a source's architecture and weights identity: from the preset or arch
// without reading the weights (they are checked against it when loaded); from the weights and
// the heads otherwise (the file is read now, and kept for Load).
func Resolve(s Source) (*Resolved, error) {
	key := func(k string) string { return s.Prefix + k }
	if s.Arch != nil {
		if s.Weights != "" {
			return nil, fmt.Errorf("%s describes a random-weights model; with %s give %s (or %s) instead", key("arch"), key("weights"), key("heads"), key("preset"))
		}
		return &Resolved{Config: *s.Arch, Weights: RandomWeightsID}, nil
	}
	heads := s.Heads
	var preset *Config
	if s.Preset != "" {
		c, err := Preset(s.Preset, s.ImageSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key("preset"), err)
		}
		if heads != 0 && heads != c.Heads {
			return nil, fmt.Errorf("%s %d contradicts %s %s (%d heads)", key("heads"), heads, key("preset"), s.Preset, c.Heads)
		}
		preset, heads = &c, c.Heads
	}
	if s.Weights == "" {
		if preset == nil {
			return nil, fmt.Errorf("give %s (random weights), %s or %s with %s", key("preset"), key("arch"), key("weights"), key("heads"))
		}
		return &Resolved{Config: *preset, Weights: RandomWeightsID}, nil
	}
	if heads <= 0 {
		return nil, fmt.Errorf("%s is required with %s (the number of heads cannot be read off the weights), or give %s", key("heads"), key("weights"), key("preset"))
	}
	hash, err := checkpoint.FileHash(s.Weights)
	if err != nil {
		return nil, err
	}
	r := &Resolved{Weights: hash, path: s.Weights, src: s}
	if preset != nil {
		r.Config = *preset
		return r, nil
	}
	if r.file, r.Config, err = r.read(heads); err != nil {
		return nil, err
	}
	return r, nil
}

// read loads the checkpoint and infers its architecture.
func (r *Resolved) read(heads int) (*checkpoint.File, Config, error) {
	f, err := checkpoint.Load(r.path)
	if err != nil {
		return nil, Config{}, err
	}
	c, err := InferConfig(f, heads)
	return f, c, err
}

// Load puts the model on a backend: random weights (seed 0) without a checkpoint; otherwise the
// checkpoint, which must hold the resolved architecture.
func (r *Resolved) Load(b backends.Backend) (*Model, error) {
	if r.path == "" {
		return New(b, r.Config, RandomWeights(r.Config, 0))
	}
	f := r.file
	if f == nil {
		var c Config
		var err error
		f, c, err = r.read(r.Config.Heads)
		switch {
		case err != nil && f != nil: // the file reads but is not this preset's architecture
			return nil, fmt.Errorf("%s is not %spreset %s at image size %d (%s): %w", r.path, r.src.Prefix, r.src.Preset, r.src.ImageSize, r.Config, err)
		case err != nil:
			return nil, err
		case c.String() != r.Config.String():
			return nil, fmt.Errorf("%s holds %s, which is not %spreset %s at image size %d (%s)", r.path, c, r.src.Prefix, r.src.Preset, r.src.ImageSize, r.Config)
		}
	}
	r.file = nil // the weights now live on the backend
	return New(b, r.Config, f)
}
