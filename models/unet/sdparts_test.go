package unet_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/clip"
	"github.com/cachebench/cachebench/models/unet"
	"github.com/cachebench/cachebench/models/vae"
)

// A whole Stable Diffusion checkpoint missing the part a loader reads gets one error naming the
// missing part and the parts that are there.
func TestSDCheckpointMissingPart(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, keys ...string) string {
		ts := map[string]*checkpoint.Tensor{}
		for _, k := range keys {
			ts[k] = checkpoint.NewF32([]float32{0}, 1)
		}
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, ts, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unetKey, vaeKey, textKey := "model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight",
		"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
	noUNet := write("no_unet.safetensors", vaeKey, textKey)
	noVAE := write("no_vae.safetensors", unetKey, textKey)
	noText := write("no_text.safetensors", unetKey, vaeKey)
	for _, c := range []struct {
		name string
		load func() error
		want []string
	}{
		{"unet", func() error { _, err := unet.Load(b, noUNet, 4); return err }, []string{"no UNet", "the VAE", "the text encoder"}},
		{"vae", func() error { _, err := vae.Load(b, noVAE); return err }, []string{"no VAE decoder", "the UNet", "the text encoder"}},
		{"text", func() error { _, err := clip.LoadTextEncoder(b, noText, clip.TextConfig{Heads: 12}); return err },
			[]string{"no CLIP text encoder", "model.diffusion_model.", "first_stage_model."}},
	} {
		err := c.load()
		if err == nil {
			t.Errorf("%s: loaded a checkpoint without its part", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
}
