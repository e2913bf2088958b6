//go:build xla

package engine

// The XLA backend needs cgo and a PJRT plugin (CUDA: GOMLX_BACKEND=xla:cuda or an absolute
// plugin path, with GOMLX_NO_AUTO_INSTALL=1). It is linked only with `-tags xla`.
import _ "github.com/gomlx/gomlx/backends/xla"
