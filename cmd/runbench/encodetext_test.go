package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/clip"
)

// encode-text on a whole-SD-layout file (the golden tiny CLIP's text tower under
// cond_stage_model.transformer.*) writes the same context as the OpenAI-named model.
func TestEncodeTextCLI(t *testing.T) {
	weights, _, _, _ := clipFixture(t)
	dir := t.TempDir()
	openai, err := checkpoint.Load(weights)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := clip.OpenAIToHF(openai.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	sd := map[string]*checkpoint.Tensor{"model.diffusion_model.out.2.bias": checkpoint.NewF32(make([]float32, 4), 4)}
	for k, v := range hf {
		if strings.HasPrefix(k, "text_model.") {
			sd[clip.SDTextPrefix+k] = v
		}
	}
	sdPath := filepath.Join(dir, "sd-tiny.safetensors")
	if err := checkpoint.WriteSafetensors(sdPath, sd, nil); err != nil {
		t.Fatal(err)
	}
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	texts := []string{"a photo of a cat", "", strings.Repeat("a red square next to a blue circle ", 20)}
	prompts := filepath.Join(dir, "prompts.txt")
	writeFile(t, prompts, strings.Join(texts, "\n")+"\n")
	out := filepath.Join(dir, "context.safetensors")
	msg, err := execClip(newEncodeTextCmd(), "--weights", sdPath, "--vocab", vocab, "--prompts", prompts, "--out", out, "--text-heads", "4", "--batch", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	if !strings.Contains(msg, "3 prompts → context [3 77 64]") || !strings.Contains(msg, "truncated (lines 3)") {
		t.Errorf("output:\n%s", msg)
	}
	f, err := checkpoint.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ctx := f.Tensors["context"]
	if ctx == nil || !slices.Equal(ctx.Shape, []int{3, 77, 64}) {
		t.Fatalf("context %v, want shape [3 77 64]", ctx)
	}
	toks, err := f.Get("tokens")
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := toks.Int64()
	if ids[0] != clip.SOT || ids[76] != clip.EOT || ids[77] != clip.SOT || ids[78] != clip.EOT || ids[79] != clip.EOT || ids[2*77+76] != clip.EOT {
		t.Errorf("token rows %v, want SOT … EOT padded with EOT", ids)
	}
	if m := f.Metadata; m["weights_layout"] != clip.TextSD.String() || len(m["weights_sha256"]) != 64 || m["truncated"] != "1" || !strings.Contains(m["padding"], "EOT") {
		t.Errorf("metadata %v", m)
	}
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := clip.Load(b, weights, clip.Config{VisionHeads: 1, TextHeads: 4})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := clip.LoadTokenizer(vocab)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.HiddenStates(tok.TokenizePad(texts, clip.EOT))
	if err != nil {
		t.Fatal(err)
	}
	if got := ctx.Data.([]float32); !slices.Equal(got, want) {
		t.Errorf("context differs from the OpenAI-named model's hidden states by %g", golden.MaxAbs(got, want))
	}
}

func TestEncodeTextCLIErrors(t *testing.T) {
	weights, _, _, _ := clipFixture(t)
	dir := t.TempDir()
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	prompts := filepath.Join(dir, "prompts.txt")
	writeFile(t, prompts, "a cat\n")
	out := filepath.Join(dir, "out.safetensors")
	noText := filepath.Join(dir, "unet-only.safetensors")
	if err := checkpoint.WriteSafetensors(noText, map[string]*checkpoint.Tensor{
		"model.diffusion_model.out.2.bias": checkpoint.NewF32(make([]float32, 4), 4)}, nil); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	writeFile(t, empty, "")
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"no text encoder", []string{"--weights", noText, "--vocab", vocab, "--prompts", prompts, "--out", out, "--text-heads", "4"},
			[]string{"no CLIP text encoder (cond_stage_model.transformer.*) in " + noText}},
		{"default preset vs tiny", []string{"--weights", weights, "--vocab", vocab, "--prompts", prompts, "--out", out},
			[]string{weights, "Width is 768 but the weights have 64"}},
		{"contradiction", []string{"--weights", weights, "--vocab", vocab, "--prompts", prompts, "--out", out, "--preset", "ViT-L/14", "--text-heads", "4"},
			[]string{"--text-heads 4 contradicts --preset ViT-L/14"}},
		{"no prompts", []string{"--weights", weights, "--vocab", vocab, "--out", out}, []string{"--prompts is required"}},
		{"empty prompts", []string{"--weights", weights, "--vocab", vocab, "--prompts", empty, "--out", out, "--text-heads", "4"}, []string{empty, "empty file"}},
		{"missing out dir", []string{"--weights", weights, "--vocab", vocab, "--prompts", prompts, "--out", filepath.Join(dir, "no", "o.safetensors"), "--text-heads", "4"},
			[]string{"does not exist"}},
	} {
		_, err := execClip(newEncodeTextCmd(), c.args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", c.name, err, w)
			}
		}
	}
}
