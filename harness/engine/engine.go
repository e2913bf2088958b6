// Package engine selects the GoMLX backend that runs every graph of the harness.
//
// The CPU build links only the pure-Go backend; the XLA backend (CUDA PJRT plugin) is linked
// with `-tags xla` (see xla.go). The default configuration is "go:ops_sequential" because the
// plain "go" configuration of GoMLX v0.26 deadlocks on 2-core machines for models of depth >= 6
// (nested worker pools waiting on each other; see docs/gomlx.md).
package engine

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// DefaultConfig is the backend used when neither a flag nor $GOMLX_BACKEND names one.
const DefaultConfig = "go:ops_sequential"

var (
	mu     sync.Mutex
	shared = map[string]backends.Backend{}
)

// Config returns the backend configuration in force: explicit, else $GOMLX_BACKEND, else DefaultConfig.
func Config(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if env := os.Getenv(backends.ConfigEnvVar); env != "" {
		return env
	}
	return DefaultConfig
}

// New returns the (process-wide shared) backend for a configuration string such as
// "go:ops_sequential" or "xla:cuda". An empty string means Config("").
func New(config string) (b backends.Backend, err error) {
	config = Config(config)
	mu.Lock()
	defer mu.Unlock()
	if b, ok := shared[config]; ok {
		return b, nil
	}
	name := config
	if i := strings.Index(config, ":"); i >= 0 {
		name = config[:i]
	}
	if !contains(backends.List(), name) {
		hint := ""
		if name == "xla" {
			hint = " (this binary was built without XLA: rebuild with `-tags xla`, see README)"
		}
		return nil, fmt.Errorf("backend %q is not compiled in; available: %s%s", config, strings.Join(backends.List(), ", "), hint)
	}
	// GoMLX reports some configuration errors by panicking; turn them into errors.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("backend %q: %v", config, r)
		}
	}()
	b, err = backends.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", config, err)
	}
	shared[config] = b
	return b, nil
}

// Describe names the backend and its device in one line, for run records.
// On the pure-Go backend it also names the SIMD kernels in use, which change timings and the
// last bits of results (third_party/README.md).
func Describe(b backends.Backend) string {
	d := fmt.Sprintf("%s (%s)", b.Name(), b.Description())
	if b.Name() == simplego.BackendName {
		k := simplego.Float32Kernels()
		if k == "" {
			k = "none"
		}
		d += "; SIMD kernels: " + k
	}
	return d
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
