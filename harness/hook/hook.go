// Package hook is the surface between acceleration methods and models: a method plans, per step,
// one Action for every (block, module) of a model; the model carries the plan out and keeps its
// module outputs in a Cache that the harness owns.
//
// Models implement each action once (gather → compute → scatter in one graph); methods never touch
// model code or weights. See DESIGN.md, "The hook surface".
package hook

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Action is what one module does at one step. The numeric codes are those of the golden trace
// files (`actions` tensors), so traces can be compared directly.
type Action int

const (
	// Full computes the module on all tokens and refreshes its cache.
	Full Action = 0
	// Partial computes the module for selected tokens only and scatters them into the cache.
	Partial Action = 1
	// Reuse takes the cached module output unchanged.
	Reuse Action = 2
	// Skip reuses a cached residual for a whole range of blocks.
	Skip Action = 3
	// Predict extrapolates the module output from its cached history (TaylorSeer).
	Predict Action = 4
	// Prune runs the module on kept tokens only and restores dropped tokens from kept ones.
	Prune Action = 5
)

var actionNames = [...]string{"full", "partial", "reuse", "skip", "taylor", "prune"}

// String returns the action word used in trace files.
func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction is the inverse of Action.String.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want one of %v)", s, actionNames)
}

// Module names a cacheable module kind inside a block.
type Module int

const (
	// Attn is the self-attention module (output after its projection, before the adaLN gate).
	Attn Module = iota
	// MLP is the feed-forward module (output after fc2, before the adaLN gate).
	MLP
	// CrossAttn is the cross-attention module of text-conditioned models.
	CrossAttn
)

var moduleNames = [...]string{"attn", "mlp", "cross_attn"}

// String returns the module's name as used in traces and the database.
func (m Module) String() string {
	if m >= 0 && int(m) < len(moduleNames) {
		return moduleNames[m]
	}
	return fmt.Sprintf("module(%d)", int(m))
}

// Layout describes what a model exposes to methods.
type Layout struct {
	Depth   int      // number of blocks
	Modules []Module // modules per block, in execution order
	Tokens  int      // tokens per image
	GridH   int      // token grid height (row-major token order)
	GridW   int      // token grid width
	Hidden  int      // channel width of module outputs
	Heads   int      // attention heads
}

// ModulePlan is the action of one module at one step.
type ModulePlan struct {
	Action Action
	// Tokens holds, for Partial, the token indices to recompute per batch row; every row has the
	// same count. Nil otherwise.
	Tokens [][]int32
	// Value holds, for Predict, the module output [B, N, D] the method computed (e.g. a Taylor
	// extrapolation of the cache); the model uses it as it uses a cached output.
	Value *tensors.Tensor
	// Choose, for Partial with Tokens nil, defers the token choice into the forward: scores that
	// need the module's current input cannot be planned ahead. The model fills Tokens with the
	// choice before it computes the module, so everything after the call sees the tokens that ran.
	Choose *Chooser
}

// TokenScore names a per-token score computed from a module's current input.
type TokenScore int

const (
	// ScoreSimilarity is 1 − cos(input_i, cached output_i), L2-normalised over tokens. It compares
	// the module's input with its cached output, as ToCa's `similarity` does (different spaces;
	// kept for fidelity to the official code).
	ScoreSimilarity TokenScore = iota
	// ScoreNorm is ‖input_i‖, L2-normalised over tokens (ToCa's `norm`).
	ScoreNorm
)

var scoreNames = [...]string{"similarity", "norm"}

// String returns the score's name as the official code's cache_type spells it.
func (s TokenScore) String() string {
	if s >= 0 && int(s) < len(scoreNames) {
		return scoreNames[s]
	}
	return fmt.Sprintf("score(%d)", int(s))
}

// Chooser is a token choice made inside the forward of a model call.
type Chooser struct {
	Score TokenScore
	// Pick receives the score [rows][tokens] of the module's input (the pre-norm residual stream
	// the module would gather from) and returns the tokens to recompute per row, the same count
	// in every row.
	Pick func(score [][]float32) ([][]int32, error)
}

// Span is the block range From..To (inclusive).
type Span struct{ From, To int }

// SkipMode says what a skipped block range outputs.
type SkipMode int

const (
	// SkipResidual adds the range's cached residual (output − input when it last ran) to its new
	// input (Δ-DiT, FBCache/TeaCache-style residual caching).
	SkipResidual SkipMode = iota
	// SkipReplace outputs the range's cached output unchanged (DuCa aggressive steps).
	SkipReplace
)

// SpanSkip replaces a block range by cached work at one call; the range's modules carry Skip.
type SpanSkip struct {
	Span
	Mode SkipMode
	// Source is the kept range whose cache is used; the zero value means the skipped range
	// itself. (DuCa's aggressive step after a full layer 0 skips blocks 1..L−1 but outputs the
	// cached output of the whole stack.)
	Source *Span
}

// Cached returns the range whose cache a skip uses.
func (s SpanSkip) Cached() Span {
	if s.Source != nil {
		return *s.Source
	}
	return s.Span
}

// BlockPlan is the plan of one block at one step.
type BlockPlan struct {
	Modules []ModulePlan // indexed like Layout.Modules
	// AttnMap asks a Full attention to also return its head-averaged softmax map [B, query, key],
	// stored in Cache.AttnMap (side information for token scores).
	AttnMap bool
	// ValueNorms asks a Full attention to also return the L2 norm of every token's value vector
	// per head, [B, heads, N], stored in Cache.ValueNorms (DuCa's V-caching score).
	ValueNorms bool
}

// Plan is the per-block plan of one model call.
type Plan struct {
	Blocks []BlockPlan
	// Skips are block ranges not run at this call (non-overlapping).
	Skips []SpanSkip
	// Keep lists ranges whose input and output this call stores in the cache, for later Skips.
	Keep []Span
}

// SkipAt returns the skip that starts at block b, if any.
func (p *Plan) SkipAt(b int) (SpanSkip, bool) {
	for _, s := range p.Skips {
		if s.From == b {
			return s, true
		}
	}
	return SpanSkip{}, false
}

// FullPlan returns the plan that computes everything (the uncached model).
func FullPlan(l Layout) *Plan {
	p := &Plan{Blocks: make([]BlockPlan, l.Depth)}
	for i := range p.Blocks {
		p.Blocks[i].Modules = make([]ModulePlan, len(l.Modules))
	}
	return p
}

// Validate checks a plan against a layout, the cache state and the batch size.
func (p *Plan) Validate(l Layout, c *Cache, batch int) error {
	if len(p.Blocks) != l.Depth {
		return fmt.Errorf("plan has %d blocks, model has %d", len(p.Blocks), l.Depth)
	}
	skipped := make([]bool, l.Depth)
	for _, sk := range p.Skips {
		if sk.From < 0 || sk.To >= l.Depth || sk.From > sk.To {
			return fmt.Errorf("skip of blocks %d..%d outside 0..%d", sk.From, sk.To, l.Depth-1)
		}
		if c == nil || c.Span(sk.Cached()) == nil || (sk.Mode == SkipResidual && c.Span(sk.Cached()).In == nil) {
			return fmt.Errorf("skip of blocks %d..%d needs that range's cached input and output, and there are none yet", sk.From, sk.To)
		}
		for b := sk.From; b <= sk.To; b++ {
			if skipped[b] {
				return fmt.Errorf("block %d is in two skips", b)
			}
			skipped[b] = true
		}
	}
	for _, sp := range p.Keep {
		if sp.From < 0 || sp.To >= l.Depth || sp.From > sp.To {
			return fmt.Errorf("kept range %d..%d outside 0..%d", sp.From, sp.To, l.Depth-1)
		}
		if c == nil {
			return fmt.Errorf("keeping blocks %d..%d needs a cache", sp.From, sp.To)
		}
	}
	for b, bp := range p.Blocks {
		if len(bp.Modules) != len(l.Modules) {
			return fmt.Errorf("plan block %d has %d modules, model has %d", b, len(bp.Modules), len(l.Modules))
		}
		for m, mp := range bp.Modules {
			where := fmt.Sprintf("block %d %s", b, l.Modules[m])
			if skipped[b] != (mp.Action == Skip) {
				return fmt.Errorf("%s: action %s, but the block is %sin a skipped range", where, mp.Action, map[bool]string{true: "", false: "not "}[skipped[b]])
			}
			switch mp.Action {
			case Skip:
			case Predict:
				if mp.Value == nil {
					return fmt.Errorf("%s: predict without a predicted value", where)
				}
			case Full:
			case Reuse, Partial:
				if c == nil || c.Out(b, m) == nil {
					return fmt.Errorf("%s: %s needs a cached output, and there is none yet", where, mp.Action)
				}
				if mp.Action == Partial && mp.Tokens == nil && mp.Choose != nil {
					if mp.Choose.Pick == nil || mp.Choose.Score < ScoreSimilarity || mp.Choose.Score > ScoreNorm {
						return fmt.Errorf("%s: deferred token choice without a picker or with score %s", where, mp.Choose.Score)
					}
				} else if mp.Action == Partial {
					if err := CheckTokens(mp.Tokens, batch, l.Tokens); err != nil {
						return fmt.Errorf("%s: %w", where, err)
					}
				}
			default:
				return fmt.Errorf("%s: action %s is not supported by this model", where, mp.Action)
			}
		}
	}
	return nil
}

// CheckTokens checks a partial module's token lists: one per batch row, the same count in each,
// indices in [0, n) without repeats.
func CheckTokens(tokens [][]int32, batch, n int) error {
	if len(tokens) != batch {
		return fmt.Errorf("partial plan has token lists for %d rows, batch is %d", len(tokens), batch)
	}
	if batch == 0 {
		return nil
	}
	k := len(tokens[0])
	for r, row := range tokens {
		if len(row) != k {
			return fmt.Errorf("row %d selects %d tokens, row 0 selects %d", r, len(row), k)
		}
		seen := make(map[int32]bool, k)
		for _, t := range row {
			if t < 0 || int(t) >= n || seen[t] {
				return fmt.Errorf("row %d: token index %d out of range [0,%d) or repeated", r, t, n)
			}
			seen[t] = true
		}
	}
	return nil
}

// Cache holds module outputs across steps. It is owned by the harness and filled by models.
type Cache struct {
	out     [][]*tensors.Tensor // [block][module] raw (pre-gate) outputs [B, N, D]
	attnMap []*tensors.Tensor   // [block] head-averaged attention map of the last full attention
	vnorms  []*tensors.Tensor   // [block] value norms [B, heads, N] of the last full attention
	spans   map[Span]*SpanCache
}

// ValueNorms returns the cached value norms of a block, or nil.
func (c *Cache) ValueNorms(block int) *tensors.Tensor { return c.vnorms[block] }

// SetValueNorms replaces a block's cached value norms, releasing the previous ones.
func (c *Cache) SetValueNorms(block int, t *tensors.Tensor) {
	release(c.vnorms[block], t)
	c.vnorms[block] = t
}

// SpanCache is the input and output of a block range when it last ran.
type SpanCache struct {
	In, Out *tensors.Tensor // [B, N, D] residual stream before block From and after block To
}

// Span returns the cached input/output of a range, or nil.
func (c *Cache) Span(s Span) *SpanCache { return c.spans[s] }

// SetSpan replaces a range's cached input and output, releasing the previous tensors.
func (c *Cache) SetSpan(s Span, in, out *tensors.Tensor) {
	if old := c.spans[s]; old != nil {
		release(old.In, in)
		release(old.Out, out)
	}
	c.spans[s] = &SpanCache{In: in, Out: out}
}

// NewCache returns an empty cache for a layout.
func NewCache(l Layout) *Cache {
	c := &Cache{out: make([][]*tensors.Tensor, l.Depth), attnMap: make([]*tensors.Tensor, l.Depth),
		vnorms: make([]*tensors.Tensor, l.Depth), spans: map[Span]*SpanCache{}}
	for i := range c.out {
		c.out[i] = make([]*tensors.Tensor, len(l.Modules))
	}
	return c
}

// Out returns the cached output of (block, module index), or nil.
func (c *Cache) Out(block, module int) *tensors.Tensor { return c.out[block][module] }

// AttnMap returns the cached head-averaged attention map of a block, or nil.
func (c *Cache) AttnMap(block int) *tensors.Tensor { return c.attnMap[block] }

// SetOut replaces a cached output, releasing the previous one.
func (c *Cache) SetOut(block, module int, t *tensors.Tensor) {
	release(c.out[block][module], t)
	c.out[block][module] = t
}

// SetAttnMap replaces a cached attention map, releasing the previous one.
func (c *Cache) SetAttnMap(block int, t *tensors.Tensor) {
	release(c.attnMap[block], t)
	c.attnMap[block] = t
}

// Reset releases every cached tensor (between batches).
func (c *Cache) Reset() {
	for b := range c.out {
		for m := range c.out[b] {
			c.SetOut(b, m, nil)
		}
		c.SetAttnMap(b, nil)
		c.SetValueNorms(b, nil)
	}
	for s := range c.spans {
		c.SetSpan(s, nil, nil)
		delete(c.spans, s)
	}
}

func release(old, repl *tensors.Tensor) {
	if old != nil && old != repl {
		_ = old.FinalizeAll()
	}
}

// Options steer one model call.
type Options struct {
	Plan  *Plan  // nil = compute everything
	Cache *Cache // receives module outputs; required by plans that reuse
	Probe Probe  // receives named intermediates; nil = none (probing adds graph outputs)
	// Modules, when set, receives every module's output as used at this call (computed, cached
	// or predicted; nil for skipped blocks) with the action taken and the tokens recomputed per
	// row. The tensor [B, N, D] is only valid during the call (the recorder's hook).
	Modules func(block int, module Module, action Action, fresh int, out *tensors.Tensor)
}

// Spec is the data layout a model consumes and produces.
type Spec struct {
	Channels, Height, Width int  // input x is [B, Channels, Height, Width]
	LearnSigma              bool // output has 2·Channels channels (ε, then variance values)
	NumClasses              int  // labels 0..NumClasses-1; NumClasses is the null label
}

// OutChannels is the number of output channels.
func (s Spec) OutChannels() int {
	if s.LearnSigma {
		return 2 * s.Channels
	}
	return s.Channels
}

// Model is a denoiser as the sampling loop sees it.
type Model interface {
	Spec() Spec
	Layout() Layout
	// Forward runs the network on x (flat NCHW) at original timesteps t with labels y.
	Forward(x []float32, t []float64, y []int64, opt Options) ([]float32, error)
}

// Policy is an acceleration method at run time: it plans each model call and observes the
// cache afterwards (side information of the modules that were computed).
type Policy interface {
	// Plan returns the actions of model call `call` (0, 1, …) at official step `step`, which
	// counts down from steps−1 as in the DiT code bases.
	Plan(call, step int) (*Plan, error)
	// Observe is called after the call ran with the plan it carried out.
	Observe(call, step int, plan *Plan, cache *Cache) error
}

// FLOPsCounter is implemented by models that can count the FLOPs of a plan, per block, with
// the convention of the papers (see each model's BlockFLOPs).
type FLOPsCounter interface {
	BlockFLOPs(p *Plan, rows int) []int64
}

// Probe receives named intermediate tensors of a forward pass (for golden tests and the
// recorder). Names follow the golden files: "x_embed", "t_freq", "c", "block0_adaln", "block_3"...
// The tensor is only valid during the call.
type Probe func(name string, t *tensors.Tensor)
