package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// TestDecodeCLI decodes the golden latents one per pass and compares image and image_01 with
// testdata/sd-vae (tolerance of its README).
func TestDecodeCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "images.safetensors")
	msg := mustRun(t, "decode", "--vae", golden.Path("sd-vae/weights.safetensors"),
		"--in", golden.Path("sd-vae/decode.safetensors"), "--out", out, "--batch", "1")
	if !strings.Contains(msg, "2 latents 8x8") {
		t.Errorf("summary does not name the latents: %q", msg)
	}
	got := golden.Open(t, out)
	want := golden.Open(t, "sd-vae/decode.safetensors")
	for _, name := range []string{"image", "image_01"} {
		if s := fmt.Sprint(got.Tensors[name].Shape); s != "[2 3 16 16]" {
			t.Errorf("%s shape %s, want [2 3 16 16]", name, s)
		}
		if e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, name)); e > 1e-5 {
			t.Errorf("%s: rel error %.3g > 1e-5", name, e)
		}
	}
	if got.Metadata["vae_layout"] != "ldm" || got.Metadata["scale_factor"] != "0.18215" {
		t.Errorf("metadata %v", got.Metadata)
	}
}

// TestDecodeCLIErrors: each bad input is one error naming the file and the field.
func TestDecodeCLIErrors(t *testing.T) {
	dir := t.TempDir()
	weights := golden.Path("sd-vae/weights.safetensors")
	latents := golden.Path("sd-vae/decode.safetensors")
	write := func(name string, x *checkpoint.Tensor) string {
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, map[string]*checkpoint.Tensor{"latent": x}, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	three := write("three.safetensors", checkpoint.NewF32(make([]float32, 2*3*8*8), 2, 3, 8, 8))
	flat := write("flat.safetensors", checkpoint.NewF32(make([]float32, 64), 64))
	out := filepath.Join(dir, "out.safetensors")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--in", latents, "--out", out}, []string{"--vae is required"}},
		{[]string{"--vae", weights, "--out", out}, []string{"--in and --out are required"}},
		{[]string{"--vae", weights, "--in", latents, "--out", out, "--batch", "0"}, []string{"--batch 0"}},
		{[]string{"--vae", weights, "--in", latents, "--out", filepath.Join(dir, "no", "x.safetensors")}, []string{"does not exist"}},
		{[]string{"--vae", weights, "--in", weights, "--out", out}, []string{weights, `"latent"`}},
		{[]string{"--vae", weights, "--in", three, "--out", out}, []string{three, `"latent"`, "3 channels", "takes 4"}},
		{[]string{"--vae", weights, "--in", flat, "--out", out}, []string{flat, `"latent" has shape [64]`}},
		{[]string{"--vae", golden.Path("dit/weights.safetensors"), "--in", latents, "--out", out}, []string{"not an AutoencoderKL checkpoint"}},
	} {
		_, err := run(t, append([]string{"decode"}, c.args...)...)
		if err == nil {
			t.Errorf("decode %v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("decode %v: error %q does not contain %q", c.args, err, w)
			}
		}
	}
}
