// Package executor carries out hook plans for every model: the blocks' actions (full, partial,
// reuse, predict, skip), the caches, the token choices of token-wise methods and the module
// histories of TaylorSeer, all inside compiled graphs on the model's backend. A model supplies
// only its graphs (embedders, one block's modules and residuals, final layer) through Net and
// knows nothing of any method; see docs/architecture.md.
//
// Everything that depends on data stays on the device: token scores are reduced inside the
// graph that computes the attention, staleness counters and base scores live in the cache as
// device tensors, top-k is an exact rank by comparison. The host decides only what depends on
// the step index (each module's action, the number of tokens), so a step never waits for the
// device unless a trace or a recorder asks for token indices.
//
// Compilation is timed apart from execution: every graph family compiles each new input shape
// once, before it runs, and the time goes to CompileTime, so wall-clock timings on a JIT backend
// (XLA) measure execution only.
package executor

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

// Executor runs one model's graphs on one backend.
type Executor struct {
	backend backends.Backend
	net     Net
	layout  hook.Layout
	name    string

	mu       sync.Mutex
	families map[string]*Family
	compile  time.Duration
	compiled int
	// probeNames are the block probes' names, known once a probing block graph was built.
	probeNames []string
	zero       map[int]*tensors.Tensor // zeros [rows, tokens] by row count (see zeros)
	hostRanks  bool                    // rank planned scores on the host (pure-Go backend; see host.go)
}

// New returns the executor of a model; name prefixes its graphs' names.
func New(b backends.Backend, name string, net Net) *Executor {
	return &Executor{backend: b, net: net, layout: net.Layout(), name: name, families: map[string]*Family{},
		hostRanks: strings.HasPrefix(b.Name(), "SimpleGo")}
}

// Backend is the backend the graphs run on.
func (e *Executor) Backend() backends.Backend { return e.backend }

// CompileTime is the total time spent building and compiling graphs so far.
func (e *Executor) CompileTime() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.compile
}

// Compiled reports how many graph families exist and how many graphs (family × input shapes)
// were compiled.
func (e *Executor) Compiled() (families, graphs int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.families), e.compiled
}

// Family is a graph-building function compiled once per input shapes.
type Family struct {
	e    *Executor
	exec *Exec
	seen map[string]bool
	// compiling serialises the first run of a shape, so that concurrent forwards (row groups,
	// see dit.Model.Forward) compile and count it once.
	compiling sync.Mutex
}

// Family returns the graph family of a key, creating it on first use.
func (e *Executor) Family(key string, fn func([]*Node) []*Node) *Family {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.families[key]; ok {
		return f
	}
	x := MustNewExec(e.backend, fn).WithName(e.name + "/" + key)
	x.SetMaxCache(-1) // shapes vary only with the batch and token buckets, which are bounded
	f := &Family{e: e, exec: x, seen: map[string]bool{}}
	e.families[key] = f
	return f
}

// Run executes the graph on args (device tensors or host values), compiling first, and timing
// the compilation apart, when the input shapes are new. It panics on errors (callers run it
// inside gx.Catch).
func (f *Family) Run(args ...any) []*tensors.Tensor {
	key := shapeKey(args)
	f.e.mu.Lock()
	seen := f.seen[key]
	f.e.mu.Unlock()
	if !seen {
		f.compiling.Lock()
		defer f.compiling.Unlock()
		f.e.mu.Lock()
		seen = f.seen[key]
		f.e.mu.Unlock()
	}
	if !seen {
		t0 := time.Now()
		if err := f.exec.PreCompile(args...); err != nil {
			panic(fmt.Errorf("compile %s: %w", f.exec.Name(), err))
		}
		f.e.mu.Lock()
		f.seen[key] = true
		f.e.compile += time.Since(t0)
		f.e.compiled++
		f.e.mu.Unlock()
	}
	return f.exec.MustExec(args...)
}

// shapeKey names the shapes of a list of arguments.
func shapeKey(args []any) string {
	var sb strings.Builder
	for _, a := range args {
		switch v := a.(type) {
		case *tensors.Tensor:
			sb.WriteString(v.Shape().String())
		case []float32:
			fmt.Fprintf(&sb, "f32[%d]", len(v))
		case []int32:
			fmt.Fprintf(&sb, "i32[%d]", len(v))
		default:
			fmt.Fprintf(&sb, "%T", v)
		}
		sb.WriteByte(';')
	}
	return sb.String()
}
