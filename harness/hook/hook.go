// Package hook is the surface between acceleration methods and models: a method plans, per step,
// one Action for every (block, module) of a model; the executor (harness/executor) carries the
// plan out on the model's graphs and keeps what persists across steps in a Cache that the harness
// owns.
//
// A plan depends on the step index only; what depends on data (token choices, Taylor sums) is a
// rule the plan names and the executor runs on the device. Methods never touch model code or
// weights. See docs/architecture.md.
package hook

import (
	"fmt"
	"slices"
	"time"

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
	// Blocks, when set, describes blocks that differ from each other (a UNet's levels); nil means
	// every block has Modules at Tokens on the GridH×GridW grid.
	Blocks []BlockShape
}

// BlockShape is one block of a model whose blocks differ.
type BlockShape struct {
	Name         string // the reference's name (input_blocks.1, middle_block, output_blocks.3, …)
	Tokens       int    // tokens its modules see (0: the block has no token modules)
	GridH, GridW int    // their grid
}

// TokensAt is the token count of block b's modules (0: it has none).
func (l Layout) TokensAt(b int) int { return l.Shape(b).Tokens }

// Shape is block b's shape (the layout's common one when its blocks do not differ).
func (l Layout) Shape(b int) BlockShape {
	if l.Blocks == nil {
		return BlockShape{Tokens: l.Tokens, GridH: l.GridH, GridW: l.GridW}
	}
	return l.Blocks[b]
}

// ModulePlan is the action of one module at one step.
type ModulePlan struct {
	Action Action
	// Tokens holds, for Partial, token indices planned on the host per batch row (every row the
	// same count): the module recomputes them, whatever Select would choose. With Select nil they
	// are the whole choice; a run that asks for tokens (Options.Tokens) gets the device's choice
	// written here after the call.
	Tokens [][]int32
	// Select, for Partial, is the rule by which the executor chooses the tokens on the device,
	// inside the compiled block graph: nothing crosses to the host unless asked for.
	Select *Selection
	// Series, for Predict, is the module output as a weighted sum of its history (TaylorSeer).
	Series *Series
	// History, for Full, pushes the computed output into the module's history of finite
	// differences (TaylorSeer's factors).
	History *History
	// Prune, for Prune, is the rule by which the module drops tokens and restores them.
	Prune *Pruning
}

// PruneRule names how a Prune action chooses the tokens a module drops and what they receive.
type PruneRule int

const (
	// PruneDynamics is DaTo's (dato.prune_and_recover_tokens): per row, score = Gamma·D +
	// NoiseAlpha·noise (noise alone before the model has dynamics D, the mean over channels of
	// |ε − ε_prev| of its last two outputs); the best-scoring token of every SY×SX cell is a base
	// token; among the others, the K most cosine-similar to a base token (similarity of the
	// module's input stream normalised by its norm rounded to float16) are dropped. The module
	// runs on the kept tokens; a dropped token receives the output of its most similar kept token.
	PruneDynamics PruneRule = iota + 1
	// PruneMerge is ToMeSD's bipartite soft matching (tomesd bipartite_soft_matching_random2d):
	// one destination token per SY×SX cell at position Cells[cell]; the K sources most similar to
	// a destination are averaged into it; the module runs on the merged tokens, and each merged
	// source receives its destination's output.
	PruneMerge
)

// Pruning is a Prune action's rule and its draws.
type Pruning struct {
	Rule   PruneRule
	K      int // tokens dropped (merged) per row
	SX, SY int // cell of one base (destination) token
	// PruneDynamics:
	Gamma      float32     // weight of the dynamics term, its sign drawn by the method
	NoiseAlpha float32     // weight of the noise where there are dynamics
	Noise      [][]float32 // per row, one value per token (DaTo's torch.randn draw)
	// Pairs makes rows r and r + B/2 (the two CFG halves) keep the base tokens the null half
	// (second) chose, as DaTo's align_cfg copies the unconditional rows' choice.
	Pairs bool
	// PruneMerge: the destination's position inside each cell (dy·SX + dx), cells row-major,
	// shared by every row (tomesd draws one per call).
	Cells []int32
}

// Fresh is the number of tokens per row the module recomputes at a Partial action.
func (mp ModulePlan) Fresh() int {
	switch {
	case mp.Action != Partial:
		return 0
	case len(mp.Tokens) > 0:
		return len(mp.Tokens[0])
	case mp.Select != nil:
		return mp.Select.K
	}
	return 0
}

// TokenScore names the base score of a token choice.
type TokenScore int

const (
	// ScoreNone: no base score (the zero value).
	ScoreNone TokenScore = iota
	// ScoreAttention is the attention each token received at the block's last full attention
	// (column sums of the head-averaged map), L2-normalised over tokens (ToCa's s1).
	ScoreAttention
	// ScoreValueNorm is Σ_h (1 − ‖v_{i,h}‖) at the block's last full attention, L2-normalised
	// over tokens (DuCa's V-caching score: small value norms first).
	ScoreValueNorm
	// ScoreRandom takes Selection.Random, drawn on the host from (seed, sample, call, layer).
	ScoreRandom
	// ScoreSimilarity is 1 − cos(input_i, cached output_i), L2-normalised over tokens. It compares
	// the module's current input with its cached output, as ToCa's `similarity` does (different
	// spaces; kept for fidelity to the official code).
	ScoreSimilarity
	// ScoreNorm is ‖input_i‖ of the module's current input, L2-normalised over tokens (ToCa's `norm`).
	ScoreNorm
	// ScoreEntropy is the entropy of the cross-attention each token gives the caption
	// (ToCa-PixArt's s2): with P̄ the head-averaged probabilities averaged over the two CFG halves,
	// score = L2-normalise(1 + H(P̄)). The halves attend to disjoint caption tokens, so H(P̄) is
	// the sum of a per-row term e_r = −Σ_c (P_rc/2)·ln(P_rc/2 + 1e-7); the cache keeps e per row,
	// refreshed by a full cross-attention and, for the recomputed tokens, by a partial one.
	// Without Selection.Pairs a row pairs with itself (H = 2e_r).
	ScoreEntropy
)

var scoreNames = [...]string{"none", "attention", "vnorm", "random", "similarity", "norm", "entropy"}

// Source is the module whose computation refreshes a block's base score of this kind.
func (s TokenScore) Source() Module {
	if s == ScoreEntropy {
		return CrossAttn
	}
	return Attn
}

// String returns the score's name as the methods' `score` parameter spells it.
func (s TokenScore) String() string {
	if s >= 0 && int(s) < len(scoreNames) {
		return scoreNames[s]
	}
	return fmt.Sprintf("score(%d)", int(s))
}

// ParseTokenScore is the inverse of TokenScore.String.
func ParseTokenScore(s string) (TokenScore, error) {
	for i, n := range scoreNames {
		if n == s && i != int(ScoreNone) {
			return TokenScore(i), nil
		}
	}
	return 0, fmt.Errorf("unknown token score %q (want one of %v)", s, scoreNames[1:])
}

// Selection is ToCa's token choice (Zou et al., ICLR 2025, §3.3), carried out on the device:
//
//	score_in = base + float32(StaleWeight·stale)/float32(StaleNorm)
//	score    = score_in, plus Beta·score on the best token of every Grid×Grid cell
//	fresh    = the K highest scores (ties: lower token index first)
//
// where stale counts, per (row, token), the partial steps since the token was last recomputed
// (a Full action of the module resets it; a Partial one adds 1 and zeroes the fresh tokens).
type Selection struct {
	K           int
	Score       TokenScore
	Random      [][]float32 // ScoreRandom: the base score per row and token
	StaleWeight float32     // λ3
	StaleNorm   int         // N, the fresh threshold
	Grid        int         // grid-bonus cell side (0 = no bonus)
	Beta        float32     // grid-bonus factor
	// Pairs makes rows r and r + B/2 (the two CFG halves) share one score, so both halves
	// recompute the same tokens (ToCa/DuCa on PixArt-α; ScoreEntropy only).
	Pairs bool
}

// Series predicts a module output from its history F_0..F_{n−1}: Σ_i (F_i·Scale_i)·Power_i,
// summed in order in float32 (TaylorSeer: Scale_i = 1/i!, Power_i = x^i).
type Series struct{ Scale, Power []float32 }

// History updates a module's history at a full step at distance Step from the previous one:
// F'_0 = f and F'_{i+1} = (F'_i − F_i)/Step, keeping Orders factors (so Orders−1 old ones are used).
type History struct {
	Step   float32
	Orders int
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
	// Refresh asks the score's source module (TokenScore.Source), when Full, to store the block's
	// base token score (ScoreAttention, ScoreValueNorm, ScoreEntropy), reduced inside the graph,
	// for later token choices; a Partial cross-attention updates an entropy score's fresh tokens.
	Refresh TokenScore
}

// Plan is the per-block plan of one model call.
type Plan struct {
	Blocks []BlockPlan
	// Skips are block ranges not run at this call (non-overlapping).
	Skips []SpanSkip
	// Keep lists ranges whose input and output this call stores in the cache, for later Skips.
	Keep []Span
	// RangesOnly says the method reuses block ranges only: full modules leave no output in the
	// cache (which would hold memory nothing reads; Δ-DiT).
	RangesOnly bool
	// Gate, when set, lets this call skip a block range by a decision made from its own data
	// (threshold caches); the executor writes what it did into Gate.Skipped.
	Gate *Gate
	// Dynamics asks the model to keep its output and, from the second call on, the per-token
	// dynamics D (mean over channels of |ε − ε_prev|) in the cache for later PruneDynamics rules.
	Dynamics bool
}

// GateStat names the statistic a gate measures, per batch row, as a relative L1 change
// mean|v − v′| / mean|v′| against a reference kept in the cache.
type GateStat int

const (
	// StatModulatedInput compares the input of block Span.From's first module (the attention's
	// modulated, normalised input) with the previous call's (TeaCache). The reference is replaced
	// at every call.
	StatModulatedInput GateStat = iota
	// StatResidual compares the residual of blocks 0 … Span.From−1 (stream after them minus the
	// stream entering block 0) with the one stored at the last call that ran the range
	// (First-Block Cache, DBCache's Fn blocks). The reference is replaced only where the range ran.
	StatResidual
)

// Gate is a data-dependent skip of the block range Span (TeaCache, FBCache/DBCache): before the
// range, the executor measures Stat for every row, reads it on the host (as the reference codes
// do with .item()) and asks Decide which rows skip. A skipped row adds the range's residual from
// the last call that ran it for that row; the others run the range, whose residual is stored.
type Gate struct {
	Span Span
	Stat GateStat
	// PerBatch pools the statistic over the whole batch (Σ|v − v′| / Σ|v′|, the reference codes'
	// semantics: one decision for every row); otherwise every row is decided alone, and a row's
	// output does not depend on the other rows of its batch.
	PerBatch bool
	// Decide gets the statistic (one value per row, or one for the batch with PerBatch; +Inf
	// where there is no reference yet) and returns which rows skip (as many values). A row with
	// no stored residual is never skipped: Decide must not ask for it.
	Decide func(stat []float64) ([]bool, error)
	// Skipped is what the executor did, one value per row (filled after the call).
	Skipped []bool
	// Stats are the measured statistics handed to Decide (filled after the call).
	Stats []float64
}

func (g *Gate) validate(l Layout, c *Cache, p *Plan, skipped []bool) error {
	switch {
	case g.Span.From < 0 || g.Span.To >= l.Depth || g.Span.From > g.Span.To:
		return fmt.Errorf("gate over blocks %d..%d outside 0..%d", g.Span.From, g.Span.To, l.Depth-1)
	case g.Stat == StatResidual && g.Span.From == 0:
		return fmt.Errorf("a residual gate measures the blocks before its range: the range cannot start at block 0")
	case g.Stat != StatResidual && g.Stat != StatModulatedInput:
		return fmt.Errorf("gate with unknown statistic %d", g.Stat)
	case g.Decide == nil:
		return fmt.Errorf("gate without a decision")
	case c == nil:
		return fmt.Errorf("a gate needs a cache")
	}
	for b := g.Span.From; b <= g.Span.To; b++ {
		if skipped[b] {
			return fmt.Errorf("block %d is both gated and skipped", b)
		}
		for m, mp := range p.Blocks[b].Modules {
			if mp.Action != Full || mp.History != nil {
				return fmt.Errorf("gated block %d %s: action %s, want a plain full action (a gated range runs whole or not at all)", b, l.Modules[m], mp.Action)
			}
		}
	}
	return nil
}

// Ran is how many rows ran the gated range at this call (all rows before the call).
func (g *Gate) Ran(rows int) int {
	n := rows
	for _, s := range g.Skipped {
		if s {
			n--
		}
	}
	return n
}

// ExecutedFLOPs is a plan's FLOPs per block as executed: a gated range is billed only for the rows
// that ran it (block FLOPs are linear in the rows; the statistic's own arithmetic is not counted,
// as the reference counters do not count it).
func ExecutedFLOPs(c FLOPsCounter, p *Plan, rows int) []int64 {
	f := c.BlockFLOPs(p, rows)
	if g := p.Gate; g != nil && g.Skipped != nil && rows > 0 {
		ran := int64(g.Ran(rows))
		for b := g.Span.From; b <= g.Span.To; b++ {
			f[b] = f[b] * ran / int64(rows)
		}
	}
	return f
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

// Skip adds a skipped block range to the plan and marks every module in it Skip.
func (p *Plan) Skip(sk SpanSkip) {
	p.Skips = append(p.Skips, sk)
	for b := sk.From; b <= sk.To; b++ {
		for i := range p.Blocks[b].Modules {
			p.Blocks[b].Modules[i] = ModulePlan{Action: Skip}
		}
	}
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
	if g := p.Gate; g != nil {
		if err := g.validate(l, c, p, skipped); err != nil {
			return err
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
			if l.TokensAt(b) == 0 && mp.Action != Full && mp.Action != Skip {
				return fmt.Errorf("%s: action %s, but the block has no token modules (full or skip only)", where, mp.Action)
			}
			if skipped[b] != (mp.Action == Skip) {
				return fmt.Errorf("%s: action %s, but the block is %sin a skipped range", where, mp.Action, map[bool]string{true: "", false: "not "}[skipped[b]])
			}
			if err := mp.validate(l, c, b, m, batch); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		switch bp.Refresh {
		case ScoreNone, ScoreAttention, ScoreValueNorm:
		case ScoreEntropy:
			if !slices.Contains(l.Modules, CrossAttn) {
				return fmt.Errorf("block %d: an entropy score needs a cross-attention, and the model has none", b)
			}
		default:
			return fmt.Errorf("block %d: a full module cannot refresh a %s score", b, bp.Refresh)
		}
	}
	return nil
}

func (mp ModulePlan) validate(l Layout, c *Cache, b, m, batch int) error {
	switch mp.Action {
	case Skip:
	case Predict:
		if mp.Series == nil || len(mp.Series.Scale) == 0 || len(mp.Series.Scale) != len(mp.Series.Power) {
			return fmt.Errorf("predict needs a series with as many scales as powers (at least one)")
		}
		if c == nil || len(c.History(b, m)) < len(mp.Series.Scale) {
			return fmt.Errorf("predict from %d history terms, and the cache holds %d (was the last full step run with a history?)",
				len(mp.Series.Scale), len(c.History(b, m)))
		}
	case Full:
		if h := mp.History; h != nil {
			if c == nil || h.Orders < 1 || h.Step == 0 || len(c.History(b, m)) < h.Orders-1 {
				return fmt.Errorf("history update to %d orders at step distance %g needs a cache holding %d terms", h.Orders, h.Step, max(h.Orders-1, 0))
			}
		}
	case Prune:
		return mp.Prune.validate(l.Shape(b), batch)
	case Reuse, Partial:
		if c == nil || c.Out(b, m) == nil {
			return fmt.Errorf("%s needs a cached output, and there is none yet", mp.Action)
		}
		if mp.Action == Reuse {
			return nil
		}
		if mp.Tokens == nil && mp.Select == nil {
			return fmt.Errorf("partial without planned tokens or a selection rule")
		}
		if mp.Tokens != nil {
			if err := CheckTokens(mp.Tokens, batch, l.Tokens); err != nil {
				return err
			}
		}
		if s := mp.Select; s != nil {
			return s.validate(l, batch)
		}
	default:
		return fmt.Errorf("action %s is not supported by this model", mp.Action)
	}
	return nil
}

func (p *Pruning) validate(bs BlockShape, batch int) error {
	n := bs.Tokens
	switch {
	case p == nil:
		return fmt.Errorf("prune without a rule")
	case p.Rule != PruneDynamics && p.Rule != PruneMerge:
		return fmt.Errorf("prune with unknown rule %d", p.Rule)
	case p.SX < 1 || p.SY < 1 || bs.GridW < p.SX || bs.GridH < p.SY:
		return fmt.Errorf("prune cells of %d×%d on the %d×%d token grid", p.SY, p.SX, bs.GridH, bs.GridW)
	}
	dst := (bs.GridH / p.SY) * (bs.GridW / p.SX)
	if p.K < 0 || p.K > n-dst {
		return fmt.Errorf("prune of %d tokens, want 0..%d (%d tokens, %d base tokens)", p.K, n-dst, n, dst)
	}
	switch p.Rule {
	case PruneDynamics:
		if len(p.Noise) != batch {
			return fmt.Errorf("prune noise for %d rows, batch is %d", len(p.Noise), batch)
		}
		for r, row := range p.Noise {
			if len(row) != n {
				return fmt.Errorf("prune noise of row %d has %d tokens, want %d", r, len(row), n)
			}
		}
		if p.Pairs && batch%2 != 0 {
			return fmt.Errorf("paired CFG halves need an even batch (%d rows)", batch)
		}
	case PruneMerge:
		if len(p.Cells) != dst {
			return fmt.Errorf("merge destinations for %d cells, want %d", len(p.Cells), dst)
		}
		for i, c := range p.Cells {
			if c < 0 || int(c) >= p.SX*p.SY {
				return fmt.Errorf("merge destination %d of cell %d outside the %d positions of a cell", c, i, p.SX*p.SY)
			}
		}
	}
	return nil
}

func (s *Selection) validate(l Layout, batch int) error {
	switch {
	case s.K < 0 || s.K > l.Tokens:
		return fmt.Errorf("selection of %d tokens out of %d", s.K, l.Tokens)
	case s.Score < ScoreAttention || s.Score > ScoreEntropy:
		return fmt.Errorf("selection with unknown score %s", s.Score)
	case s.Pairs && (s.Score != ScoreEntropy || batch%2 != 0):
		return fmt.Errorf("paired CFG halves need the entropy score and an even batch (score %s, %d rows)", s.Score, batch)
	case s.StaleNorm < 1:
		return fmt.Errorf("selection with staleness normaliser %d (want ≥ 1)", s.StaleNorm)
	case s.Grid < 0 || (s.Grid > 0 && (l.GridH%s.Grid != 0 || l.GridW%s.Grid != 0)):
		return fmt.Errorf("grid-bonus cells of %d do not tile the %d×%d token grid", s.Grid, l.GridH, l.GridW)
	}
	if s.Score == ScoreRandom {
		if len(s.Random) != batch {
			return fmt.Errorf("random score for %d rows, batch is %d", len(s.Random), batch)
		}
		for r, row := range s.Random {
			if len(row) != l.Tokens {
				return fmt.Errorf("random score of row %d has %d tokens, want %d", r, len(row), l.Tokens)
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

// Cache holds what the executor keeps across steps, on the device: module outputs, the token
// state of token-wise methods, module histories and block-range residuals. It is owned by the
// harness (one per batch) and filled by the executor.
type Cache struct {
	out     [][]*tensors.Tensor   // [block][module] raw (pre-gate) outputs [B, N, D]
	base    []*tensors.Tensor     // [block] base token score [B, N] of the last refreshing full attention
	stale   [][]*tensors.Tensor   // [block][module] staleness counters [B, N] (float32); nil = all zero
	history [][][]*tensors.Tensor // [block][module] finite-difference history F_0, F_1, …
	spans   map[Span]*SpanCache
	gates   map[Span]*GateCache
	modules []Module        // the layout's modules, naming the outputs in Bytes
	output  *tensors.Tensor // the model's last output (Plan.Dynamics)
	dyn     *tensors.Tensor // [B, N] per-token dynamics of the last two outputs
}

// Output is the model's last output kept for dynamics (nil = none).
func (c *Cache) Output() *tensors.Tensor { return c.output }

// Dynamics is the per-token dynamics [B, N] of the model's last two outputs (nil = none yet).
func (c *Cache) Dynamics() *tensors.Tensor { return c.dyn }

// SetDynamics replaces the kept output and dynamics, releasing the previous tensors.
func (c *Cache) SetDynamics(output, dyn *tensors.Tensor) {
	release(c.output, output)
	release(c.dyn, dyn)
	c.output, c.dyn = output, dyn
}

// GateCache is what a gated range keeps: its residual (output − input) when each row last ran
// it, and the reference of the gate's statistic.
type GateCache struct {
	Residual, Ref *tensors.Tensor // [B, N, D]
}

// SpanCache is the input and output of a block range when it last ran.
type SpanCache struct {
	In, Out *tensors.Tensor // [B, N, D] residual stream before block From and after block To
}

// NewCache returns an empty cache for a layout.
func NewCache(l Layout) *Cache {
	c := &Cache{out: make([][]*tensors.Tensor, l.Depth), base: make([]*tensors.Tensor, l.Depth),
		stale: make([][]*tensors.Tensor, l.Depth), history: make([][][]*tensors.Tensor, l.Depth), spans: map[Span]*SpanCache{}, gates: map[Span]*GateCache{},
		modules: l.Modules}
	for i := range c.out {
		c.out[i] = make([]*tensors.Tensor, len(l.Modules))
		c.stale[i] = make([]*tensors.Tensor, len(l.Modules))
		c.history[i] = make([][]*tensors.Tensor, len(l.Modules))
	}
	return c
}

// Out returns the cached output of (block, module index), or nil.
func (c *Cache) Out(block, module int) *tensors.Tensor { return c.out[block][module] }

// SetOut replaces a cached output, releasing the previous one.
func (c *Cache) SetOut(block, module int, t *tensors.Tensor) {
	release(c.out[block][module], t)
	c.out[block][module] = t
}

// Base returns a block's base token score, or nil.
func (c *Cache) Base(block int) *tensors.Tensor { return c.base[block] }

// SetBase replaces a block's base token score, releasing the previous one.
func (c *Cache) SetBase(block int, t *tensors.Tensor) {
	release(c.base[block], t)
	c.base[block] = t
}

// Stale returns a module's staleness counters, or nil when they are all zero.
func (c *Cache) Stale(block, module int) *tensors.Tensor { return c.stale[block][module] }

// SetStale replaces a module's staleness counters (nil = all zero), releasing the previous ones.
func (c *Cache) SetStale(block, module int, t *tensors.Tensor) {
	release(c.stale[block][module], t)
	c.stale[block][module] = t
}

// History returns a module's finite-difference history (nil on a nil cache).
func (c *Cache) History(block, module int) []*tensors.Tensor {
	if c == nil {
		return nil
	}
	return c.history[block][module]
}

// SetHistory replaces a module's history, releasing the terms not kept.
func (c *Cache) SetHistory(block, module int, ts []*tensors.Tensor) {
	for _, old := range c.history[block][module] {
		if !slices.Contains(ts, old) {
			release(old, nil)
		}
	}
	c.history[block][module] = ts
}

// Span returns the cached input/output of a range, or nil.
func (c *Cache) Span(s Span) *SpanCache { return c.spans[s] }

// Gate returns a gated range's cache, or nil.
func (c *Cache) Gate(s Span) *GateCache { return c.gates[s] }

// SetGate replaces a gated range's residual and reference (nil keeps nothing), releasing the
// previous tensors.
func (c *Cache) SetGate(s Span, residual, ref *tensors.Tensor) {
	if old := c.gates[s]; old != nil {
		release(old.Residual, residual)
		release(old.Ref, ref)
	}
	if residual == nil && ref == nil {
		delete(c.gates, s)
		return
	}
	c.gates[s] = &GateCache{Residual: residual, Ref: ref}
}

// SetSpan replaces a range's cached input and output, releasing the previous tensors.
func (c *Cache) SetSpan(s Span, in, out *tensors.Tensor) {
	if old := c.spans[s]; old != nil {
		release(old.In, in)
		release(old.Out, out)
	}
	c.spans[s] = &SpanCache{In: in, Out: out}
}

// Bytes is the memory the cache holds now, by kind: a module's outputs under the module's name
// ("attn", "mlp", "cross_attn"), "history" (finite-difference histories), "token_state" (base
// scores and staleness counters), "ranges" (block-range inputs and outputs), "dynamics" (the last
// output and its per-token dynamics), and "total". A
// tensor held under two names is counted once (under the first).
func (c *Cache) Bytes() map[string]int64 {
	out := map[string]int64{"total": 0}
	seen := map[*tensors.Tensor]bool{}
	add := func(kind string, t *tensors.Tensor) {
		if t == nil || seen[t] {
			return
		}
		seen[t] = true
		n := int64(t.Shape().Size()) * int64(t.DType().Size())
		out[kind] += n
		out["total"] += n
	}
	for b := range c.out {
		for m := range c.out[b] {
			add(c.modules[m].String(), c.out[b][m])
			for _, h := range c.history[b][m] {
				add("history", h)
			}
			add("token_state", c.stale[b][m])
		}
		add("token_state", c.base[b])
	}
	for _, s := range c.spans {
		add("ranges", s.In)
		add("ranges", s.Out)
	}
	for _, g := range c.gates {
		add("ranges", g.Residual)
		add("gate_ref", g.Ref)
	}
	add("dynamics", c.output)
	add("dynamics", c.dyn)
	return out
}

// Reset releases every cached tensor (between batches).
func (c *Cache) Reset() {
	for b := range c.out {
		for m := range c.out[b] {
			c.SetOut(b, m, nil)
			c.SetStale(b, m, nil)
			c.SetHistory(b, m, nil)
		}
		c.SetBase(b, nil)
	}
	for s := range c.gates {
		c.SetGate(s, nil, nil)
	}
	for s := range c.spans {
		c.SetSpan(s, nil, nil)
		delete(c.spans, s)
	}
	c.SetDynamics(nil, nil)
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
	// Tokens asks for the tokens chosen on the device: they are copied to the host and written
	// into the plan's ModulePlan.Tokens (traces, per-token diagnostics). It costs a device-to-host
	// copy per partial module; without it no token index leaves the device.
	Tokens bool
	// Choices, when set, receives every device token choice: the score before the grid bonus and
	// the tokens the rule chose (which differ from those computed when the plan forces Tokens).
	Choices func(block int, module Module, scoreIn [][]float32, chosen [][]int32)
	// DeviceChoice ranks every token choice inside the graph, also where the executor would rank
	// scores known before the call on the host (the pure-Go backend, whose memory is the host's;
	// tests of the graph path).
	DeviceChoice bool
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

// Compiler is implemented by models that compile graphs (JIT backends): CompileTime is the
// cumulative compilation time, which timings keep apart from execution.
type Compiler interface {
	CompileTime() time.Duration
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
