// Package methods holds the acceleration methods: each is a small policy that plans, for every
// model call, one hook.Action per (block, module), over the hook surface every model exposes.
// Methods never touch model code, weights or sampler maths.
//
// Every method registers itself by name with typed, validated parameters; New builds one for a
// run. A method instance holds per-batch state (caches' bookkeeping, counters, scores): make a
// new one for every batch.
package methods

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/harness/hook"
)

// Env is what a method knows about the run it plans.
type Env struct {
	Layout hook.Layout
	Steps  int // sampling steps S (model calls)
	Rows   int // batch rows of each model call (2 per image under CFG)
	// Seed and Samples (the sample index of each image in the batch) seed methods that draw
	// random numbers, so their choices depend on (seed, sample index) only.
	Seed    int64
	Samples []int
	// Calibration holds what `runbench calibrate` measured for this run's model, sampler, steps
	// and CFG (nil = none given); the runner checks it against the run (Calibration.Check).
	Calibration *Calibration
}

// Note annotates one block's decision at one call, for traces; unused fields stay nil.
type Note struct {
	Type     string   // the block type as the official code names it (full, ToCa, reuse, ...)
	TUsed    *float64 // interval threshold the block's full-step test used
	TAfter   *float64 // interval threshold after the block
	Ratio    *float64 // MLP fresh-ratio schedule value (before clamping)
	RatioF32 *float64 // float32(clamp(ratio, 0, 1))
	// CrossRatio and CrossRatioF32 are the same for a partial cross-attention (PixArt-α).
	CrossRatio, CrossRatioF32 *float64
}

// Method is a policy with trace annotations.
type Method interface {
	hook.Policy
	// Notes describes the blocks of the last planned call.
	Notes() []Note
}

// Kind is a parameter's type.
type Kind int

const (
	// Int parameters are whole numbers.
	Int Kind = iota
	// Float parameters are real numbers.
	Float
	// Enum parameters take one of a list of words.
	Enum
)

// Param describes one method parameter.
type Param struct {
	Name     string
	Kind     Kind
	Default  string
	Min, Max float64  // inclusive range for Int and Float
	Choices  []string // for Enum
	Doc      string
}

// Values are validated parameter values.
type Values map[string]any

// Int returns an Int parameter.
func (v Values) Int(name string) int { return v[name].(int) }

// Float returns a Float parameter.
func (v Values) Float(name string) float64 { return v[name].(float64) }

// String returns an Enum parameter.
func (v Values) String(name string) string { return v[name].(string) }

// Info describes a registered method.
type Info struct {
	Name   string
	Doc    string
	Params []Param
	// Steps, when set, overrides the number of sampling steps (the fewer-steps baseline).
	Steps func(v Values) int
	// Uncached methods reuse nothing across calls: a run gives them no cache (whose full-step
	// outputs would be kept, and counted as cache memory, for nothing).
	Uncached bool
	// DataDependent methods decide at run time from the data (hook.Gate): a dry run's planned
	// FLOPs say nothing about them, only the executed FLOPs of a real run do.
	DataDependent bool
	// Fits says which models the method plans (zero: uniform transformer stacks).
	Fits Fit
	New  func(v Values, env Env) (Method, error)
}

var registry = map[string]*Info{}

func register(i *Info) { registry[i.Name] = i }

// Names lists the registered methods.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns a method's description.
func Lookup(name string) (*Info, error) {
	i, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown method %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return i, nil
}

// Parse validates raw "name=value" parameters of a method and fills in defaults.
func (i *Info) Parse(raw map[string]string) (Values, error) {
	v := Values{}
	known := map[string]bool{}
	for _, p := range i.Params {
		known[p.Name] = true
	}
	for k := range raw {
		if !known[k] {
			var names []string
			for _, p := range i.Params {
				names = append(names, p.Name)
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("method %s takes no parameters, got %q", i.Name, k)
			}
			return nil, fmt.Errorf("method %s has no parameter %q (parameters: %s)", i.Name, k, strings.Join(names, ", "))
		}
	}
	for _, p := range i.Params {
		s, ok := raw[p.Name]
		if !ok {
			s = p.Default
		}
		val, err := p.parse(s)
		if err != nil {
			return nil, fmt.Errorf("method %s: parameter %s=%q: %w", i.Name, p.Name, s, err)
		}
		v[p.Name] = val
	}
	return v, nil
}

func (p Param) parse(s string) (any, error) {
	s = strings.TrimSpace(s)
	switch p.Kind {
	case Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("want an integer")
		}
		if float64(n) < p.Min || float64(n) > p.Max {
			return nil, fmt.Errorf("want an integer in [%g, %g]", p.Min, p.Max)
		}
		return n, nil
	case Float:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) {
			return nil, fmt.Errorf("want a number")
		}
		if f < p.Min || f > p.Max {
			return nil, fmt.Errorf("want a number in [%g, %g]", p.Min, p.Max)
		}
		return f, nil
	default:
		for _, c := range p.Choices {
			if c == s {
				return s, nil
			}
		}
		return nil, fmt.Errorf("want one of %s", strings.Join(p.Choices, ", "))
	}
}

// NeedsCache reports whether a method reuses anything across calls (unknown methods: true, so
// that the error comes from New).
func NeedsCache(name string) bool {
	i, ok := registry[name]
	return !ok || !i.Uncached
}

// New builds a method for one batch from raw parameters.
func New(name string, raw map[string]string, env Env) (Method, Values, error) {
	info, err := Lookup(name)
	if err != nil {
		return nil, nil, err
	}
	v, err := info.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	if env.Steps <= 0 || env.Rows <= 0 || env.Layout.Depth <= 0 {
		return nil, nil, fmt.Errorf("method %s: run has %d steps, %d rows, %d blocks", name, env.Steps, env.Rows, env.Layout.Depth)
	}
	if !info.FitsLayout(env.Layout) {
		kind := map[bool]string{true: "a UNet (Stable Diffusion)", false: "a uniform transformer stack (DiT, PixArt-α)"}[env.Layout.Blocks != nil]
		return nil, nil, fmt.Errorf("method %s does not apply to this model, %s", name, kind)
	}
	m, err := info.New(v, env)
	if err != nil {
		return nil, nil, fmt.Errorf("method %s: %w", name, err)
	}
	return m, v, nil
}

// ParseParams splits "k=v" strings (as given to --param) into a map.
func ParseParams(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--param %q: want name=value", kv)
		}
		k = strings.TrimSpace(k)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--param %s given twice", k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

func f64(v float64) *float64 { return &v }

// uniformPlan returns a plan with the same action for every module of every block.
func uniformPlan(l hook.Layout, a hook.Action) *hook.Plan {
	p := hook.FullPlan(l)
	for b := range p.Blocks {
		for m := range p.Blocks[b].Modules {
			p.Blocks[b].Modules[m].Action = a
		}
	}
	return p
}

func notes(depth int, typ string) []Note {
	n := make([]Note, depth)
	for i := range n {
		n[i].Type = typ
	}
	return n
}
