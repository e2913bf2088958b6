package dit_test

import (
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/dit"
)

// One resolver for every way a DiT is named (flags, experiment files), with one error each.
func TestResolve(t *testing.T) {
	w := golden.Path("dit/weights.safetensors")
	arch := &dit.Config{InputSize: 8, PatchSize: 4, InChannels: 3, Hidden: 16, Depth: 1, Heads: 2, MLPRatio: 4, NumClasses: 10}
	for _, c := range []struct {
		name string
		src  dit.Source
		want string // "" = resolves
	}{
		{"preset", dit.Source{Preset: "DiT-S/8", ImageSize: 64}, ""},
		{"arch", dit.Source{Arch: arch}, ""},
		{"weights and heads", dit.Source{Weights: w, Heads: 4}, ""},
		{"nothing", dit.Source{Prefix: "--"}, "give --preset"},
		{"weights without heads", dit.Source{Weights: w, Prefix: "model."}, "model.heads is required"},
		{"heads contradict preset", dit.Source{Preset: "DiT-XL/2", ImageSize: 256, Heads: 4, Prefix: "--"}, "--heads 4 contradicts --preset DiT-XL/2"},
		{"arch with weights", dit.Source{Arch: arch, Weights: w, Prefix: "model."}, "model.arch describes a random-weights model"},
		{"bad preset", dit.Source{Preset: "DiT-Q/2", ImageSize: 256, Prefix: "--"}, "--preset: unknown DiT preset"},
	} {
		r, err := dit.Resolve(c.src)
		if c.want == "" {
			if err != nil || r.Config.Validate() != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			if (c.src.Weights == "") != (r != nil && r.Weights == dit.RandomWeightsID) {
				t.Errorf("%s: weights id %q", c.name, r.Weights)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// A preset with weights of another architecture resolves (nothing is read yet) and fails to load.
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := dit.Resolve(dit.Source{Preset: "DiT-S/2", ImageSize: 256, Weights: w, Prefix: "--"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(b); err == nil || !strings.Contains(err.Error(), "not --preset DiT-S/2") {
		t.Errorf("preset against other weights: %v", err)
	}
	r, _ = dit.Resolve(dit.Source{Weights: w, Heads: 4})
	if m, err := r.Load(b); err != nil || m.Depth != r.Config.Depth {
		t.Errorf("load from weights: %v", err)
	}
}
