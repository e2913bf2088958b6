package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/inception/inceptiontest"
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

// fid, stats and metrics on images through the real Inception code path (formula weights):
// statistics of a set equal to itself give FID 0; the reference is cached and reused; metrics
// land in the run's database rows.
func TestFIDImagesCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Inception-v3 on 6 images (~15 s); skipped with -short")
	}
	dir := t.TempDir()
	t.Setenv("CACHEBENCH_CACHE", filepath.Join(dir, "cache"))
	weights := filepath.Join(dir, "inception.safetensors")
	if err := inceptiontest.WriteFormulaWeights(weights); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for i, d := range []string{a, b} {
		_ = os.Mkdir(d, 0o755)
		for j := range 5 {
			writePNGSeed(t, filepath.Join(d, fmt.Sprintf("%d.png", j)), 16, 16, i*10+j)
		}
	}
	ref := filepath.Join(dir, "ref.npz")
	mustRun(t, "stats", "--images", a, "--weights", weights, "--out", ref)
	var got struct{ FID float64 }
	out := mustRun(t, "fid", a, ref, "--weights", weights, "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.FID) > 1e-6 {
		t.Errorf("fid(a, stats(a)) = %g, want 0", got.FID)
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "cache", "refstats", "*.npz"))
	if len(cached) != 1 {
		t.Errorf("%d cached statistics, want 1 (a's)", len(cached))
	}
	out = mustRun(t, "fid", a, b, "--weights", weights, "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || !(got.FID > 0) {
		t.Errorf("fid(a, b) = %g (%v), want > 0", got.FID, err)
	}
	// metrics against a's statistics with a's images as the P/R reference, stored in a run.
	db := filepath.Join(dir, "runs.db")
	s, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := s.EnsureRun(store.Run{ConfigJSON: `{"x":1}`})
	s.Close()
	out = mustRun(t, "metrics", "--images", b, "--ref", ref, "--ref-images", a, "--weights", weights, "--db", db, "--run", fmt.Sprint(r.ID), "--json")
	var rep metrics.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if math.Abs(rep.FID-got.FID) > 1e-9 || rep.SFID == nil || rep.IS == nil || rep.Precision == nil || rep.KID == nil || rep.N != 5 {
		t.Errorf("metrics report %+v (fid(a,b) %g)", rep, got.FID)
	}
	s, _ = store.Open(db)
	defer s.Close()
	ms, err := s.Metrics(r.ID)
	if err != nil || len(ms) != 6 || !strings.HasPrefix(ms[0].Extractor, "pytorch-fid-inception-v3@") {
		t.Errorf("stored metrics %+v (%v)", ms, err)
	}
}

func writePNGSeed(t *testing.T, path string, w, h, seed int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8((i*7 + seed*31 + (i/3)*seed) % 251)
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
