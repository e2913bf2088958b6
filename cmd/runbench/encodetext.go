package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/clip"
)

// encodeTextFlags are the flags of `runbench encode-text`.
type encodeTextFlags struct {
	weights, vocab, prompts, out, preset string
	textHeads, batch                     int
}

// sdPadding records in the output how the rows were built, since the context depends on it.
const sdPadding = "SOT, BPE ids (first 75 kept), EOT, padded with EOT 49407 to 77: HF CLIPTokenizer(openai/clip-vit-large-patch14) with padding=max_length, max_length=77, truncation=True, as LDM's FrozenCLIPEmbedder and diffusers call it"

func newEncodeTextCmd() *cobra.Command {
	var f encodeTextFlags
	cmd := &cobra.Command{
		Use:   "encode-text --weights W --vocab V --prompts FILE --out OUT.safetensors [--preset ViT-L/14 | --text-heads N]",
		Short: "Stable Diffusion v1 text conditioning: the CLIP text encoder's last hidden state of each prompt",
		Long: `Encodes each line of --prompts (an empty line is the empty prompt, classifier-free guidance's
unconditional text) as Stable Diffusion v1 does and writes to --out:
  context  F32 [P, 77, width]  the text tower's last hidden state after its final LayerNorm
                               (CLIPTextModel(...).last_hidden_state), the UNet's cross-attention input
  tokens   I32 [P, 77]         the token rows: SOT, BPE ids, EOT, padded with EOT (49407); a prompt
                               over 75 BPE ids keeps its first 75 and ends in EOT at position 76
--weights is a whole SD v1 checkpoint (its cond_stage_model.transformer.* is used, e.g.
v1-5-pruned-emaonly.safetensors or .ckpt), diffusers' text_encoder/model.safetensors, or an
OpenAI / Hugging Face CLIP checkpoint (its text tower). --vocab is CLIP's BPE merges file
(bpe_simple_vocab_16e6.txt.gz, or diffusers' tokenizer/merges.txt). The head count is not in the
weights: --preset (default ViT-L/14, SD v1's encoder, whose other sizes must then match the
weights) or --text-heads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEncodeText(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.weights, "weights", "", "text encoder weights: whole SD v1 checkpoint, diffusers text_encoder/model.safetensors, or OpenAI/HF CLIP")
	fl.StringVar(&f.vocab, "vocab", "", "CLIP BPE merges file (bpe_simple_vocab_16e6.txt.gz)")
	fl.StringVar(&f.prompts, "prompts", "", "text file with one prompt per line")
	fl.StringVar(&f.out, "out", "", "output safetensors file (context, tokens)")
	fl.StringVar(&f.preset, "preset", "ViT-L/14", "OpenAI architecture giving the text heads ("+strings.Join(clip.PresetNames(), ", ")+")")
	fl.IntVar(&f.textHeads, "text-heads", 0, "text attention heads, instead of --preset (OpenAI models: text width / 64)")
	fl.IntVar(&f.batch, "batch", clip.DefaultBatchSize, "prompts per graph execution (bounds memory)")
	return cmd
}

// encodeTextConfig turns --preset / --text-heads into the configuration the weights are checked
// against; --text-heads alone checks only the heads.
func encodeTextConfig(cmd *cobra.Command, f encodeTextFlags) (clip.TextConfig, error) {
	if f.textHeads < 0 {
		return clip.TextConfig{}, fmt.Errorf("--text-heads %d, want > 0", f.textHeads)
	}
	if f.textHeads > 0 && !cmd.Flags().Changed("preset") {
		return clip.TextConfig{Heads: f.textHeads}, nil
	}
	c, err := clip.Preset(f.preset)
	if err != nil {
		return clip.TextConfig{}, fmt.Errorf("--preset: %w", err)
	}
	if f.textHeads > 0 && f.textHeads != c.TextHeads {
		return clip.TextConfig{}, fmt.Errorf("--text-heads %d contradicts --preset %s (%d text heads)", f.textHeads, f.preset, c.TextHeads)
	}
	return c.Text(), nil
}

func runEncodeText(cmd *cobra.Command, f encodeTextFlags) error {
	for _, r := range []struct{ flag, v string }{{"--weights", f.weights}, {"--vocab", f.vocab}, {"--prompts", f.prompts}, {"--out", f.out}} {
		if r.v == "" {
			return fmt.Errorf("%s is required", r.flag)
		}
	}
	if f.batch < 1 {
		return fmt.Errorf("--batch %d, want ≥ 1", f.batch)
	}
	if st, err := os.Stat(filepath.Dir(f.out)); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: folder %s does not exist", f.out, filepath.Dir(f.out))
	}
	cfg, err := encodeTextConfig(cmd, f)
	if err != nil {
		return err
	}
	prompts, err := readPrompts(f.prompts)
	if err != nil {
		return err
	}
	tok, err := clip.LoadTokenizer(f.vocab)
	if err != nil {
		return err
	}
	backendCfg, _ := cmd.Flags().GetString("backend") // a persistent flag of the root, absent when run alone
	b, err := engine.New(backendCfg)
	if err != nil {
		return err
	}
	enc, err := clip.LoadTextEncoder(b, f.weights, cfg)
	if err != nil {
		return err
	}
	enc.BatchSize = f.batch
	if enc.ContextLength != tok.ContextLength {
		return fmt.Errorf("%s: the text encoder takes %d tokens per row, the tokenizer makes %d", f.weights, enc.ContextLength, tok.ContextLength)
	}
	rows := tok.TokenizePad(prompts, clip.EOT)
	var truncated []string
	for i, p := range prompts {
		if len(tok.Encode(p))+2 > tok.ContextLength {
			truncated = append(truncated, fmt.Sprint(i+1))
		}
	}
	start := time.Now()
	ctx, err := enc.HiddenStates(rows)
	if err != nil {
		return fmt.Errorf("%s: %w", f.prompts, err)
	}
	elapsed := time.Since(start)
	P, L := len(prompts), enc.ContextLength
	flat := make([]int32, 0, P*L)
	for _, r := range rows {
		flat = append(flat, r...)
	}
	meta := map[string]string{
		"producer":       "runbench encode-text",
		"weights":        f.weights,
		"weights_sha256": enc.SHA256,
		"weights_layout": enc.Layout.String(),
		"text_encoder":   enc.TextConfig.String(),
		"context":        "last hidden state after the final LayerNorm (CLIPTextModel last_hidden_state)",
		"padding":        sdPadding,
		"prompts":        f.prompts,
		"truncated":      fmt.Sprint(len(truncated)),
		"backend":        engine.Config(backendCfg),
	}
	out := map[string]*checkpoint.Tensor{
		"context": checkpoint.NewF32(ctx, P, L, enc.Width),
		"tokens":  checkpoint.NewI32(flat, P, L),
	}
	if err := checkpoint.WriteSafetensors(f.out, out, meta); err != nil {
		return err
	}
	if len(truncated) > 0 {
		shown := truncated[:min(len(truncated), 10)]
		more := ""
		if len(truncated) > len(shown) {
			more = ", …"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d prompts over 75 BPE ids were truncated (lines %s%s)\n", f.prompts, len(truncated), strings.Join(shown, ", "), more)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d prompts → context [%d %d %d], tokens [%d %d] in %s; %s (%s)\n",
		f.out, P, P, L, enc.Width, P, L, elapsed.Round(time.Millisecond), enc.ID(), enc.Layout)
	return nil
}

// readPrompts reads one prompt per line; unlike captions, an empty line is a prompt (the empty
// text of classifier-free guidance), and only an empty file is an error.
func readPrompts(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the message names the path already
		}
		return nil, fmt.Errorf("prompts %s: %w", path, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("prompts %s: empty file, want one prompt per line", path)
	}
	text := strings.TrimSuffix(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n")
	return strings.Split(text, "\n"), nil
}
