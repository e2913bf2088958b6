package main

import (
	"fmt"
	"image"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
)

func newExportCmd() *cobra.Command {
	var run int64
	var out string
	cmd := &cobra.Command{
		Use:   "export DB --adm OUT.npz [--run ID]",
		Short: "Pack a run's images as an ADM sample batch (.npz) for guided-diffusion's evaluator",
		Long: `Writes the images of one run of DB as the sample batch guided-diffusion's
evaluations/evaluator.py reads (and DiT's sample_ddp.py writes): "arr_0", uint8 [N, H, W, 3]
in sample-index order, and "arr_1", the int64 class labels. The images are the stored PNGs,
read one at a time (a 50k batch never sits in memory); each file must still have the sha256
the run recorded, so a replaced image is an error, not a silent change. With the official
evaluator:
  python evaluator.py VIRTUAL_imagenet256_labeled.npz OUT.npz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--adm is required: the .npz to write")
			}
			n, err := exportADM(args[0], run, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d images (arr_0) and labels (arr_1)\n", out, n)
			return nil
		},
	}
	cmd.Flags().Int64Var(&run, "run", 0, "the run to export (default: the database's only run)")
	cmd.Flags().StringVar(&out, "adm", "", "sample batch .npz to write")
	return cmd
}

// exportADM writes a run's stored images as an ADM sample batch and returns how many.
func exportADM(dbPath string, runID int64, out string) (int, error) {
	db, err := store.OpenReadOnly(dbPath)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if runID == 0 {
		runs, err := db.Runs()
		if err != nil {
			return 0, err
		}
		if len(runs) != 1 {
			var ids []string
			for _, r := range runs {
				ids = append(ids, fmt.Sprintf("%d (%s)", r.ID, r.Method))
			}
			return 0, fmt.Errorf("%s holds %d runs (%s): choose one with --run", dbPath, len(runs), strings.Join(ids, ", "))
		}
		runID = runs[0].ID
	}
	run, err := db.Run(runID)
	if err != nil {
		return 0, err
	}
	samples, err := db.SampleOutputs(runID)
	if err != nil {
		return 0, err
	}
	if len(samples) != run.NumSamples {
		return 0, fmt.Errorf("%s run %d holds %d of its %d samples: finish it (rerun, or merge its shards) before exporting", dbPath, runID, len(samples), run.NumSamples)
	}
	labels := make([]int64, len(samples))
	for i, s := range samples {
		switch {
		case s.OutputPath == "":
			return 0, fmt.Errorf("%s run %d sample %d: no image was kept (outputs = \"hash\"); rerun with outputs = \"keep\"", dbPath, runID, s.Index)
		case !strings.HasSuffix(s.OutputPath, ".png"):
			return 0, fmt.Errorf("%s run %d sample %d: %s is not an image (latents need a VAE: [model] vae or sample --vae)", dbPath, runID, s.Index, s.OutputPath)
		case s.Label == nil:
			labels = nil
		case labels != nil:
			labels[i] = int64(*s.Label)
		}
	}
	first, err := readPNG(samples[0])
	if err != nil {
		return 0, err
	}
	b := first.Bounds()
	h, w := b.Dy(), b.Dx()
	img := func(i int) ([]uint8, error) {
		m := first
		if i > 0 {
			if m, err = readPNG(samples[i]); err != nil {
				return nil, err
			}
		}
		if m.Bounds().Dx() != w || m.Bounds().Dy() != h {
			return nil, fmt.Errorf("%s is %dx%d, the run's first image %dx%d", samples[i].OutputPath, m.Bounds().Dx(), m.Bounds().Dy(), w, h)
		}
		return rgb(m), nil
	}
	return len(samples), metrics.WriteSampleBatch(out, len(samples), h, w, 3, img, labels)
}

// readPNG reads a sample's image after checking the file is the one the run recorded.
func readPNG(s store.Sample) (image.Image, error) {
	m, err := datasets.DecodeImage(s.OutputPath, s.OutputHash)
	if err != nil {
		return nil, fmt.Errorf("sample %d: %w", s.Index, err)
	}
	return m, nil
}

// rgb is an image's pixels as uint8 HWC RGB (grey images repeated over the three channels).
func rgb(m image.Image) []uint8 {
	b := m.Bounds()
	out := make([]uint8, 0, b.Dx()*b.Dy()*3)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := m.At(x, y).RGBA()
			out = append(out, uint8(r>>8), uint8(g>>8), uint8(bl>>8))
		}
	}
	return out
}
