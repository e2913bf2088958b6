package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/vae"
)

// decodeFlags are the flags of `runbench decode`.
type decodeFlags struct {
	vae, in, out, tensor string
	batch                int
}

func newDecodeCmd() *cobra.Command {
	var f decodeFlags
	cmd := &cobra.Command{
		Use:   "decode --vae FILE --in IN.safetensors --out OUT.safetensors",
		Short: "Decode Stable Diffusion latents into images with the AutoencoderKL decoder",
		Long: `Reads the latents [B, 4, h, w] (F32, NCHW, as the sampler returns them: scaled by 0.18215) from
tensor "latent" of --in, decodes them with Stable Diffusion v1's VAE decoder (z = latent/0.18215,
then AutoencoderKL.decode, as LatentDiffusion.decode_first_stage) and writes to --out:
  image     F32 [B, 3, 8h, 8w]  the decoder output (about [−1, 1])
  image_01  F32 [B, 3, 8h, 8w]  clamp((image + 1)/2, 0, 1), as txt2img before saving
--vae is an AutoencoderKL checkpoint in the LDM layout (sd-vae-ft-ema/mse "original" files, or a
whole SD v1 checkpoint, whose first_stage_model.* is used) or the diffusers layout
(diffusion_pytorch_model.safetensors); safetensors or .pt/.ckpt. The architecture is read off
the weights. --batch bounds memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDecode(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.vae, "vae", "", "AutoencoderKL weights (LDM, whole SD checkpoint or diffusers layout)")
	fl.StringVar(&f.in, "in", "", "safetensors file holding the latents")
	fl.StringVar(&f.tensor, "tensor", "latent", "name of the latent tensor in --in")
	fl.StringVar(&f.out, "out", "", "output safetensors file (image, image_01)")
	fl.IntVar(&f.batch, "batch", vae.DefaultBatchSize, "latents per decoder pass (bounds memory)")
	return cmd
}

func runDecode(cmd *cobra.Command, f decodeFlags) error {
	switch {
	case f.vae == "":
		return fmt.Errorf("--vae is required (an AutoencoderKL checkpoint); nothing is downloaded")
	case f.in == "" || f.out == "":
		return fmt.Errorf("--in and --out are required")
	case f.batch < 1:
		return fmt.Errorf("--batch %d, want ≥ 1", f.batch)
	}
	if st, err := os.Stat(filepath.Dir(f.out)); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: folder %s does not exist", f.out, filepath.Dir(f.out))
	}
	in, err := checkpoint.Load(f.in)
	if err != nil {
		return err
	}
	lt, err := in.Get(f.tensor)
	if err != nil {
		return err
	}
	if len(lt.Shape) != 4 {
		return fmt.Errorf("%s: %q has shape %s, want [B, C, h, w]", f.in, f.tensor, checkpoint.Shape(lt.Shape))
	}
	latent, err := lt.Float32()
	if err != nil {
		return fmt.Errorf("%s: %q: %w", f.in, f.tensor, err)
	}
	backendCfg, _ := cmd.Flags().GetString("backend") // a persistent flag of the root, absent when run alone
	b, err := engine.New(backendCfg)
	if err != nil {
		return err
	}
	dec, err := vae.Load(b, f.vae)
	if err != nil {
		return err
	}
	if lt.Shape[1] != dec.EmbedDim {
		return fmt.Errorf("%s: %q has shape %s: %d channels, the decoder of %s takes %d", f.in, f.tensor,
			checkpoint.Shape(lt.Shape), lt.Shape[1], f.vae, dec.EmbedDim)
	}
	hash, err := checkpoint.FileHash(f.vae)
	if err != nil {
		return err
	}
	B := lt.Shape[0]
	bar := progressbar.NewOptions(B, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("vae decode"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish())
	start := time.Now()
	image, err := dec.DecodeShape(latent, lt.Shape, vae.Options{BatchSize: f.batch, Progress: func(done, _ int) { _ = bar.Set(done) }})
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return fmt.Errorf("%s: %q: %w", f.in, f.tensor, err)
	}
	elapsed := time.Since(start)
	s := dec.Upscale()
	shape := []int{B, dec.OutChannels, lt.Shape[2] * s, lt.Shape[3] * s}
	meta := map[string]string{
		"producer":     "runbench decode",
		"vae":          f.vae,
		"vae_sha256":   hash,
		"vae_layout":   dec.Layout.String(),
		"decoder":      dec.Config.String(),
		"scale_factor": fmt.Sprint(dec.ScaleFactor),
		"latents":      f.in + ":" + f.tensor,
		"image_01":     "clamp((image + 1)/2, 0, 1)",
		"backend":      engine.Config(backendCfg),
	}
	out := map[string]*checkpoint.Tensor{
		"image":    checkpoint.NewF32(image, shape...),
		"image_01": checkpoint.NewF32(vae.Image01(image), shape...),
	}
	if err := checkpoint.WriteSafetensors(f.out, out, meta); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d latents %dx%d → image, image_01 %v in %s (%.3g images/s)\n",
		f.out, B, lt.Shape[3], lt.Shape[2], checkpoint.Shape(shape), elapsed.Round(time.Millisecond), float64(B)/elapsed.Seconds())
	return nil
}
