package inception

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/models/inception/inceptiontest"
)

var (
	formulaOnce sync.Once
	formulaPath string
	formulaErr  error
)

// formulaWeightsFile writes the verified formula weights to a temporary safetensors file, once
// per test binary.
func formulaWeightsFile(t testing.TB) string {
	t.Helper()
	formulaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "inception-weights-")
		if err != nil {
			formulaErr = err
			return
		}
		formulaPath = filepath.Join(dir, "pt_inception_formula.safetensors")
		formulaErr = inceptiontest.WriteFormulaWeights(formulaPath)
	})
	if formulaErr != nil {
		t.Fatal(formulaErr)
	}
	return formulaPath
}

// TestMain removes the shared weights file after the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if formulaPath != "" {
		os.RemoveAll(filepath.Dir(formulaPath))
	}
	os.Exit(code)
}
