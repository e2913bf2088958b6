package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/inception"
)

// featFlags are the flags of `runbench features`.
type featFlags struct {
	extractor, weights, images, out string
	batch                           int
}

func newFeaturesCmd() *cobra.Command {
	var f featFlags
	cmd := &cobra.Command{
		Use:   "features --extractor inception --weights W --images DIR|X.npz --out F.safetensors",
		Short: "Extract Inception features (FID pool3, sFID spatial, IS logits) of a folder or .npz of images",
		Long: `Runs pytorch-fid's FID Inception-v3 on every image of --images (a folder of PNG/JPEG files in
file-name order, or an .npz whose arr_0 is uint8 [N, H, W, 3]) and writes, one row per image in
input order:
  pool3            F32 [N, 2048]  FID features
  spatial          F32 [N, 2023]  sFID features (Mixed_6d.branch1x1 channels 0-6, flattened h, w, c)
  logits           F32 [N, 1008]  pool3·fc.weightᵀ + fc.bias
  logits_unbiased  F32 [N, 1008]  pool3·fc.weightᵀ (the ADM evaluator's and torch-fidelity's IS logits)
Images are resized to 299×299 as pytorch-fid does (bilinear, align_corners=False) and scaled to
[−1, 1]. --batch bounds memory and does not change the results.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFeatures(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.extractor, "extractor", "inception", "feature network (inception: pytorch-fid's FID Inception-v3)")
	fl.StringVar(&f.weights, "weights", os.Getenv("CACHEBENCH_INCEPTION"), "Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth or a safetensors copy (default $CACHEBENCH_INCEPTION)")
	fl.StringVar(&f.images, "images", "", "images: a folder of PNG/JPEG files or an .npz holding arr_0 uint8 [N, H, W, 3]")
	fl.StringVar(&f.out, "out", "", "output safetensors file")
	fl.IntVar(&f.batch, "batch", inception.DefaultBatchSize, "images per forward pass (bounds memory; does not change results)")
	return cmd
}

func runFeatures(cmd *cobra.Command, f featFlags) error {
	switch {
	case f.extractor != "inception":
		return fmt.Errorf("--extractor %q: only inception is available", f.extractor)
	case f.weights == "":
		return fmt.Errorf("--weights is required (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or set $CACHEBENCH_INCEPTION); nothing is downloaded")
	case f.images == "" || f.out == "":
		return fmt.Errorf("--images and --out are required")
	case f.batch < 1:
		return fmt.Errorf("--batch %d, want ≥ 1", f.batch)
	}
	// Fail on an unwritable output before the long part, not after it.
	if st, err := os.Stat(filepath.Dir(f.out)); err != nil || !st.IsDir() {
		return fmt.Errorf("--out %s: folder %s does not exist", f.out, filepath.Dir(f.out))
	}
	im, err := datasets.ReadImages(f.images)
	if err != nil {
		return err
	}
	backendCfg, _ := cmd.Flags().GetString("backend") // a persistent flag of the root, absent when run alone
	b, err := engine.New(backendCfg)
	if err != nil {
		return err
	}
	net, err := inception.Load(b, f.weights)
	if err != nil {
		return err
	}
	hash, err := checkpoint.FileHash(f.weights)
	if err != nil {
		return err
	}
	bar := progressbar.NewOptions(im.N, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("inception features"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish())
	start := time.Now()
	feats, err := net.Extract(im.Pix, im.N, im.H, im.W, inception.Options{BatchSize: f.batch,
		Progress: func(done, _ int) { _ = bar.Set(done) }})
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return fmt.Errorf("%s: %w", f.images, err)
	}
	elapsed := time.Since(start)
	meta := map[string]string{
		"extractor":      "pytorch-fid FID Inception-v3",
		"weights_sha256": hash,
		"images":         f.images,
		"count":          fmt.Sprint(im.N),
		"image_size":     fmt.Sprintf("%dx%d", im.W, im.H),
		"preprocessing":  "uint8/255, bilinear resize to 299x299 (align_corners=False, no antialias), 2x-1 (pytorch-fid)",
		"spatial":        "Mixed_6d.branch1x1 channels 0-6, flattened (h, w, c) as the ADM evaluator",
		"backend":        engine.Config(backendCfg),
	}
	if names, err := json.Marshal(im.Names); err == nil {
		meta["names"] = string(names) // row i is names[i]
	}
	tensors := map[string]*checkpoint.Tensor{
		"pool3":           checkpoint.NewF32(feats.Pool3, im.N, inception.Pool3Dim),
		"spatial":         checkpoint.NewF32(feats.Spatial, im.N, inception.SpatialDim),
		"logits":          checkpoint.NewF32(feats.Logits, im.N, inception.NumLogits),
		"logits_unbiased": checkpoint.NewF32(feats.LogitsUnbiased, im.N, inception.NumLogits),
	}
	if err := checkpoint.WriteSafetensors(f.out, tensors, meta); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d images %dx%d → pool3, spatial, logits, logits_unbiased in %s (%.3g images/s)\n",
		f.out, im.N, im.W, im.H, elapsed.Round(time.Millisecond), float64(im.N)/elapsed.Seconds())
	return nil
}
