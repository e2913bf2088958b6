package main

import (
	"archive/zip"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sbinet/npyio/npy"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/metrics"
)

// A latent run decoded by the VAE exports as an ADM sample batch: arr_0 holds the stored PNGs'
// pixels in index order, arr_1 the labels; a replaced image is refused.
func TestExportADM(t *testing.T) {
	dir := t.TempDir()
	mustRunbench(t, "sample", "--preset", "DiT-S/8", "--image-size", "64", "--num", "3", "--batch", "2", "--steps", "2",
		"--labels", "7,3", "--record", "off", "--vae", golden.Path("sd-vae/weights.safetensors"), "--out-dir", dir)
	out := filepath.Join(dir, "samples.npz")
	if msg := mustRunbench(t, "export", filepath.Join(dir, "runs.db"), "--adm", out); !strings.Contains(msg, "3 images") {
		t.Errorf("export said %q", msg)
	}
	im, err := metrics.ReadImages(out)
	if err != nil {
		t.Fatal(err)
	}
	if im.N != 3 || im.H != 16 || im.W != 16 || im.C != 3 {
		t.Fatalf("arr_0 is %d×%d×%d×%d, want 3×16×16×3", im.N, im.H, im.W, im.C)
	}
	m, err := readPNG2(t, filepath.Join(runDir(t, dir, ""), "000002.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(im.Pix[2*16*16*3:], m) {
		t.Error("arr_0's last image differs from the stored PNG")
	}
	z, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var labels []int64
	for _, f := range z.File {
		if f.Name == "arr_1.npy" {
			r, _ := f.Open()
			if err := npy.Read(r, &labels); err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
	}
	if !slices.Equal(labels, []int64{7, 3, 7}) {
		t.Errorf("arr_1 = %v, want the cycled labels [7 3 7]", labels)
	}
	// A replaced image: the hash no longer matches the run's.
	if err := os.WriteFile(filepath.Join(runDir(t, dir, ""), "000001.png"), []byte("not the sample"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runbench(t, "export", filepath.Join(dir, "runs.db"), "--adm", out); err == nil || !strings.Contains(err.Error(), "was replaced after sampling") {
		t.Errorf("export of a replaced image: %v", err)
	}
}

func readPNG2(t *testing.T, path string) ([]uint8, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		return nil, err
	}
	return rgb(m), nil
}
