package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/cachebench/cachebench/models/vae"
	"github.com/cachebench/cachebench/runner"
)

// A latent model with a VAE stores decoded RGB images (16×16 from 8×8 latents with the golden
// two-level decoder), whatever the decoder's chunk size, and records the decoder in the run's
// configuration and its time as a stage.
func TestRunDecodesLatents(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	c := dit.Config{InputSize: 8, PatchSize: 2, InChannels: 4, Hidden: 32, Depth: 2, Heads: 2, MLPRatio: 2, NumClasses: 10, LearnSigma: true}
	m, err := dit.New(b, c, dit.RandomWeights(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	d, err := vae.Load(b, golden.Path("sd-vae/weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir string, chunk int, decoder runner.ImageDecoder, id string) (*runner.JobResult, error) {
		db, err := store.Open(filepath.Join(dir, "runs.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		return runner.Run(context.Background(), runner.Job{
			Config: runner.Config{Model: c.String(), Weights: "random-seed-3", Method: "fora", Sampler: "ddim", Steps: "6",
				CFGScale: 1.5, Guide: 3, Seed: 5, NumSamples: 3, VAE: id},
			RawParams: map[string]string{"N": "2"}, Model: m, BatchSize: 3, OutDir: dir, DB: db,
			Decoder: decoder, DecodeBatch: chunk})
	}
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, chunk := range []int{0, 1} {
		res, err := run(dirs[i], chunk, d, d.ID())
		if err != nil || res.Done != 3 {
			t.Fatalf("chunk %d: %v (%d done)", chunk, err, res.Done)
		}
		if res.Timing.Decode <= 0 || !strings.Contains(res.Run.ConfigJSON, `"vae":"sd-vae@`) {
			t.Errorf("chunk %d: decode time %v, config %s", chunk, res.Timing.Decode, res.Run.ConfigJSON)
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("%06d.png", i)
		a, errA := os.ReadFile(filepath.Join(dirs[0], name))
		bb, errB := os.ReadFile(filepath.Join(dirs[1], name))
		if errA != nil || errB != nil || !bytes.Equal(a, bb) {
			t.Fatalf("%s: decoding in one pass and image by image differ (%v, %v)", name, errA, errB)
		}
		img, err := png.Decode(bytes.NewReader(a))
		if err != nil || img.Bounds().Dx() != 16 || img.Bounds().Dy() != 16 {
			t.Fatalf("%s: %v, bounds %v, want a 16×16 image", name, err, img.Bounds())
		}
	}
	if _, err := run(t.TempDir(), 0, d, "sd-vae@other"); err == nil || !strings.Contains(err.Error(), "names decoder") {
		t.Errorf("a configuration naming another decoder: err = %v", err)
	}
	if _, err := run(t.TempDir(), 0, nil, d.ID()); err == nil {
		t.Error("a configuration naming a decoder the job lacks: want an error")
	}
}
