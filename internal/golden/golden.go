// Package golden loads reference tensors for tests and measures errors the way the golden
// READMEs define them (max|got − want| / max|want| per tensor).
package golden

import (
	"math"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// Path returns the absolute path of a file under the repository's testdata folder (an absolute
// path is returned unchanged).
func Path(rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", rel)
}

// Open loads a golden safetensors file from testdata, failing the test on error.
func Open(t testing.TB, rel string) *checkpoint.File {
	t.Helper()
	f, err := checkpoint.Load(Path(rel))
	if err != nil {
		t.Fatalf("golden %s: %v", rel, err)
	}
	return f
}

// F32 returns a tensor's values as float32.
func F32(t testing.TB, f *checkpoint.File, name string) []float32 {
	t.Helper()
	v, err := get(t, f, name).Float32()
	if err != nil {
		t.Fatalf("golden %s: %s: %v", f.Path, name, err)
	}
	return v
}

// F64 returns a tensor's values as float64.
func F64(t testing.TB, f *checkpoint.File, name string) []float64 {
	t.Helper()
	v, err := get(t, f, name).Float64()
	if err != nil {
		t.Fatalf("golden %s: %s: %v", f.Path, name, err)
	}
	return v
}

// I64 returns an integer tensor's values.
func I64(t testing.TB, f *checkpoint.File, name string) []int64 {
	t.Helper()
	v, err := get(t, f, name).Int64()
	if err != nil {
		t.Fatalf("golden %s: %s: %v", f.Path, name, err)
	}
	return v
}

func get(t testing.TB, f *checkpoint.File, name string) *checkpoint.Tensor {
	t.Helper()
	x, err := f.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// RelToMax is max|got − want| / max|want| (the golden READMEs' error measure). A length mismatch
// or a NaN gives +Inf.
func RelToMax[T float32 | float64](got, want []T) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var maxDiff, maxRef float64
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		maxDiff = max(maxDiff, d)
		maxRef = max(maxRef, math.Abs(float64(want[i])))
	}
	if maxRef == 0 {
		return maxDiff
	}
	return maxDiff / maxRef
}

// MaxAbs is max|got − want| (+Inf on a length mismatch or NaN).
func MaxAbs[T float32 | float64](got, want []T) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var m float64
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}
