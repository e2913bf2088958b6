package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/extractors"
	"github.com/cachebench/cachebench/metrics"
)

const fmnistWeights = "../../assets/fmnist_classifier.safetensors"

func needFashionMNIST(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(datasets.FashionMNISTDir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is missing: install the Debian package %s (`make setup`)", datasets.FashionMNISTDir, datasets.FashionMNISTPackage)
	}
}

// The real-data floor: 200 real test images through the shipped classifier score near its
// 91.5 % test accuracy, and `fid` on their cached statistics equals `metrics`' FID.
func TestMetricsFMNISTRealCLI(t *testing.T) {
	needFashionMNIST(t)
	dir := t.TempDir()
	t.Setenv("CACHEBENCH_CACHE", filepath.Join(dir, "cache"))
	ref := "../../assets/fmnist_test_stats.npz"
	out := mustRun(t, "metrics", "--extractor", "fmnist", "--weights", fmnistWeights, "--images", "fmnist:test:200", "--ref", ref, "--json")
	var rep struct {
		metrics.Report
		ClassAcc *float64 `json:"class_acc"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.ClassAcc == nil || *rep.ClassAcc < 0.85 || *rep.ClassAcc > 1 {
		t.Fatalf("class_acc %v, want ≥ 0.85: %s", rep.ClassAcc, out)
	}
	t.Logf("fid_fmnist %.4f class_acc %.3f", rep.FID, *rep.ClassAcc)
	if math.IsNaN(rep.FID) || math.IsInf(rep.FID, 0) || rep.FID < 0 || rep.N != 200 || !strings.HasPrefix(rep.Extractor, "fmnist-cnn@") {
		t.Errorf("fid %g, n %d, extractor %q", rep.FID, rep.N, rep.Extractor)
	}

	out = mustRun(t, "fid", "fmnist:test:200", ref, "--extractor", "fmnist", "--weights", fmnistWeights, "--json")
	var fid struct{ FID float64 }
	if err := json.Unmarshal([]byte(out), &fid); err != nil || math.Abs(fid.FID-rep.FID) > 1e-9*max(1, rep.FID) {
		t.Errorf("fid %g (%v), metrics %g", fid.FID, err, rep.FID)
	}
	// The cache key names the classifier and its input policy, never Inception's.
	keys, _ := filepath.Glob(filepath.Join(dir, "cache", "refstats", "*.json"))
	if len(keys) != 1 {
		t.Fatalf("%d cached keys, want 1", len(keys))
	}
	data, _ := os.ReadFile(keys[0])
	var key metrics.RefKey
	k, _ := extractors.Lookup("fmnist")
	if err := json.Unmarshal(data, &key); err != nil || !strings.HasPrefix(key.Extractor, "fmnist-cnn@") || key.Resize != k.Resize || key.Resolution != "32x32" {
		t.Errorf("cached key %s (%v)", data, err)
	}
}

func TestMetricsFMNISTErrorsCLI(t *testing.T) {
	t.Setenv("CACHEBENCH_FMNIST", "")
	dir := t.TempDir()
	// $CACHEBENCH_INCEPTION is the --weights default; the classifier must not fall back to it.
	t.Setenv("CACHEBENCH_INCEPTION", filepath.Join(dir, "inception.pth"))
	good := filepath.Join(dir, "good")
	_ = os.Mkdir(good, 0o755)
	writePNG(t, filepath.Join(good, "0.png"), 8, 8)
	writePNG(t, filepath.Join(good, "1.png"), 8, 8)
	ref := "../../assets/fmnist_test_stats.npz"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"metrics", "--extractor", "fmnist", "--weights", fmnistWeights, "--images", "fmnist:val:10", "--ref", ref}, `split "val"`},
		{[]string{"fid", "fmnist:test:x", ref, "--extractor", "fmnist", "--weights", fmnistWeights}, `count "x"`},
		{[]string{"fid", good, ref, "--extractor", "fmnist"}, "give --weights"},
		{[]string{"fid", good, ref, "--extractor", "clip"}, `--extractor: unknown extractor "clip" (known: inception, fmnist)`},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("runbench %v: want one line containing %q, got %v", c.args, c.want, err)
		}
	}
}
