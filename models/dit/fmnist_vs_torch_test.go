package dit_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/dit"
	"github.com/gomlx/gomlx/backends/simplego"
)

// BenchmarkFMNISTVsTorch times our forward of the shipped Fashion-MNIST DiT and, in the same run,
// the PyTorch model of tools/train_dit.py on the same rows and weights (tools/bench_torch_dit.py,
// one thread), so that the ratio is not skewed by a machine that got busier between two runs.
// It reports our per-row time with all cores and with one OS thread, PyTorch's, and the ratio
// of the one-thread times; it asserts nothing about them. $CACHEBENCH_PYTHON
// names the interpreter (default /usr/bin/python3, Debian's python3-torch).
func BenchmarkFMNISTVsTorch(b *testing.B) {
	const rows, iters = 250, 10
	python := os.Getenv("CACHEBENCH_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(python); err != nil {
		b.Skipf("no Python interpreter at %s (set CACHEBENCH_PYTHON): %v", python, err)
	}
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		b.Skipf("%s cannot import torch, so there is nothing to compare with: %v: %s", python, err, strings.TrimSpace(string(out)))
	}

	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := dit.Load(be, "../../assets/fmnist_dit.safetensors", 3)
	if err != nil {
		b.Fatal(err)
	}
	// The rows tools/bench_torch_dit.py builds too: zero images, t = 10·i mod 1000, y = i mod 11.
	x := make([]float32, rows*32*32)
	t := make([]float64, rows)
	y := make([]int64, rows)
	for i := range rows {
		t[i], y[i] = float64(10*i%1000), int64(i%11)
	}
	for range 2 { // warm-up: compilation and the backend's buffer pools
		if _, err := m.Forward(x, t, y, dit.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	perRow := func() float64 {
		t0 := time.Now()
		for range iters {
			if _, err := m.Forward(x, t, y, dit.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(t0).Microseconds()) / float64(iters*rows)
	}
	var goPerRow, go1PerRow float64
	b.ResetTimer()
	for b.Loop() {
		goPerRow = perRow()
		// One OS thread, as PyTorch below: the like-for-like comparison.
		procs := runtime.GOMAXPROCS(1)
		go1PerRow = perRow()
		runtime.GOMAXPROCS(procs)
	}
	b.StopTimer()

	script, err := filepath.Abs("../../tools/bench_torch_dit.py")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(python, script, "--rows", strconv.Itoa(rows), "--iters", strconv.Itoa(iters), "--threads", "1")
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	var torchPerRow float64
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "torch_us_per_row="); ok {
			torchPerRow, err = strconv.ParseFloat(v, 64)
		}
	}
	if err != nil || torchPerRow <= 0 {
		b.Fatalf("no torch_us_per_row in the script's output (%v):\n%s", err, out)
	}
	b.ReportMetric(goPerRow, "go-µs/row")
	b.ReportMetric(go1PerRow, "go-1thread-µs/row")
	b.ReportMetric(torchPerRow, "torch-µs/row")
	b.ReportMetric(go1PerRow/torchPerRow, "ratio-1thread")
	kernels := simplego.Float32Kernels()
	if kernels == "" {
		kernels = "none: build with GOEXPERIMENT=simd on amd64 (make does)"
	}
	fmt.Printf("FMNIST DiT forward, %d rows: go %.0f µs/row with GOMAXPROCS=%d, %.0f µs/row with 1 (backend %s; SIMD kernels: %s), torch %.0f µs/row (1 thread); go/torch on one thread %.2f×\n",
		rows, goPerRow, runtime.GOMAXPROCS(0), go1PerRow, engine.Describe(be), kernels, torchPerRow, go1PerRow/torchPerRow)
}
