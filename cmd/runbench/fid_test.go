package main

import (
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/cachebench/cachebench/metrics"
)

func writeStats(t *testing.T, path string, mu []float64, diag float64) {
	t.Helper()
	n := len(mu)
	s := mat.NewSymDense(n, nil)
	for i := range n {
		s.SetSym(i, i, diag)
	}
	if err := metrics.WriteRefStats(path, &metrics.RefStats{Mu: mu, Sigma: s}); err != nil {
		t.Fatal(err)
	}
}

// fid between two statistics files needs no network: ‖μ1−μ2‖² + tr(σ1+σ2−2√(σ1σ2)).
func TestFIDStatsCLI(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.npz"), filepath.Join(dir, "b.npz")
	writeStats(t, a, []float64{0, 0, 0}, 1)
	writeStats(t, b, []float64{1, 2, 2}, 4)
	out := mustRun(t, "fid", a, b, "--json")
	var got struct{ FID float64 }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if want := 9.0 + 3*(1+4-2*2); math.Abs(got.FID-want) > 1e-9 {
		t.Errorf("fid %g, want %g", got.FID, want)
	}
	c := filepath.Join(dir, "c.npz")
	writeStats(t, c, []float64{0, 0}, 1)
	trunc := filepath.Join(dir, "trunc.npz")
	data, _ := os.ReadFile(a)
	_ = os.WriteFile(trunc, data[:len(data)/2], 0o644)
	empty := filepath.Join(dir, "empty")
	_ = os.Mkdir(empty, 0o755)
	mixed := filepath.Join(dir, "mixed")
	_ = os.Mkdir(mixed, 0o755)
	writePNG(t, filepath.Join(mixed, "0.png"), 8, 8)
	writePNG(t, filepath.Join(mixed, "1.png"), 8, 6)
	good := filepath.Join(dir, "good")
	_ = os.Mkdir(good, 0o755)
	writePNG(t, filepath.Join(good, "0.png"), 8, 8)
	writePNG(t, filepath.Join(good, "1.png"), 8, 8)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fid", a, c}, "different feature networks"},
		{[]string{"fid", a, trunc}, "trunc.npz"},
		{[]string{"fid", a, empty}, "empty"},
		{[]string{"fid", a, filepath.Join(dir, "nope")}, "nope"},
		{[]string{"fid", a, mixed, "--weights", ""}, "1.png"},
		{[]string{"fid", a, good, "--weights", ""}, "need Inception weights"},
		{[]string{"fid", a}, "accepts 2 arg"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("runbench %v: want one line containing %q, got %v", c.args, c.want, err)
		}
	}
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}
