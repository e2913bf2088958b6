package methods

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/harness/hook"
)

// The methods of Stable Diffusion's UNet (Layout.Blocks set): DeepCache, ToMeSD and DaTo. They
// plan by the model call c (0, 1, …), as the reference wrappers count calls: PLMS calls the UNet
// twice at its first step, and DaTo's cache vector is indexed by call.

// DaToReleased is the cache strategy of DaTo's released search script (sd1/scripts/search_ratio.py,
// 50 PLMS steps): S[c−1] governs UNet call c ≥ 1 (call 0 is full): ≥ 2 full, 1 = only the
// shallowest branch (block id 0) and the middle block run, 0 = only the output head.
var DaToReleased = []int{0, 1, 1, 1, 1, 1, 11, 1, 1, 1, 1, 1, 1, 1, 0, 0, 11, 1, 1, 1, 0, 11, 1, 0, 1, 1, 1, 1, 1, 11,
	0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 11, 1, 1, 1, 1, 1, 1, 1, 1, 1}

func init() {
	register(&Info{Name: "deepcache", Fits: UNets,
		Doc: "DeepCache (Ma et al. 2024): call c is full iff c mod N = 0; otherwise only the shallow branch runs — input_blocks[0..branch] " +
			"and the last branch+1 output blocks — and the deeper blocks reuse their outputs from the last full call",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "uniform cache interval (full calls at c mod N = 0)"},
			{Name: "branch", Kind: Int, Default: "0", Min: 0, Max: 100, Doc: "skip branch: the input blocks 0..branch and their mirrored output blocks run at cached calls"},
		},
		New: func(v Values, env Env) (Method, error) {
			u, err := newUNetPlan(env)
			if err != nil {
				return nil, err
			}
			if b := v.Int("branch"); b >= u.inputs-1 {
				return nil, fmt.Errorf("branch %d: the UNet has input blocks 0..%d, and a branch must leave some block to cache (0..%d)", b, u.inputs-1, u.inputs-2)
			}
			return &deepCache{u: u, n: v.Int("N"), branch: v.Int("branch")}, nil
		}})
	register(&Info{Name: "tomesd", Fits: UNets,
		Doc: "ToMeSD (Bolya & Hoffman 2023, the tomesd package): in every transformer block at most max_downsample below full resolution, " +
			"the self-attention runs on tokens merged by bipartite soft matching (one random destination per sx×sy cell; the ratio·N sources " +
			"most similar to a destination averaged into it) and unmerges its output; destinations are drawn from (seed, call, block)",
		Params: []Param{
			{Name: "ratio", Kind: Float, Default: "0.5", Min: 0, Max: 0.75, Doc: "fraction of tokens merged away (r = ⌊N·ratio⌋)"},
			{Name: "max_downsample", Kind: Int, Default: "1", Min: 1, Max: 8, Doc: "merge only in blocks whose tokens are at most this factor below full resolution (1, 2, 4 or 8)"},
			{Name: "sx", Kind: Int, Default: "2", Min: 1, Max: 8, Doc: "cell width"},
			{Name: "sy", Kind: Int, Default: "2", Min: 1, Max: 8, Doc: "cell height"},
			{Name: "rand", Kind: Enum, Default: "true", Choices: []string{"true", "false"}, Doc: "random destination per cell (false: the cell's first token)"},
		},
		New: func(v Values, env Env) (Method, error) {
			u, err := newUNetPlan(env)
			if err != nil {
				return nil, err
			}
			m := &toMe{u: u, ratio: v.Float("ratio"), maxDown: v.Int("max_downsample"), sx: v.Int("sx"), sy: v.Int("sy"), rand: v.String("rand") == "true"}
			if err := u.checkCells(m.sx, m.sy, m.maxDown, m.ratio); err != nil {
				return nil, err
			}
			return m, nil
		}})
	register(&Info{Name: "dato", Fits: UNets,
		Doc: "DaTo (Zhang et al. 2024, the official datosd patch): DeepCache-style block caching by a cache strategy, and in the " +
			"transformers at full resolution the self-attention of the tokens left after dynamics-aware pruning: base tokens are the " +
			"best of every sx×sy cell by γ·D + 0.1·noise (D the per-pixel change of ε between the last two calls, γ = ±gamma by a " +
			"coin flip per block call), the ratio·N tokens most similar to a base token are pruned and take the output of their most " +
			"similar kept token. As released, the middle block also runs (unused) at branch calls",
		Params: []Param{
			{Name: "strategy", Kind: Enum, Default: "released", Choices: []string{"released", "uniform"},
				Doc: "cache strategy: the released 50-entry vector (search_ratio.py; entry c−1 governs call c) or uniform (full at c mod N = 0, else the shallowest branch)"},
			{Name: "N", Kind: Int, Default: "3", Min: 1, Max: 1000, Doc: "interval of the uniform strategy"},
			{Name: "ratio", Kind: Float, Default: "0.4", Min: 0, Max: 0.75, Doc: "pruned fraction of the tokens (the released patch hard-codes 0.4)"},
			{Name: "gamma", Kind: Float, Default: "0.1", Min: 0, Max: 100, Doc: "weight of the dynamics term (diff_gema)"},
			{Name: "noise", Kind: Float, Default: "0.1", Min: 0, Max: 100, Doc: "weight of the noise term (noise_alpha)"},
			{Name: "max_downsample", Kind: Int, Default: "1", Min: 1, Max: 1, Doc: "prune only at full resolution, where the dynamics are (the released value)"},
			{Name: "sx", Kind: Int, Default: "2", Min: 1, Max: 8, Doc: "cell width"},
			{Name: "sy", Kind: Int, Default: "2", Min: 1, Max: 8, Doc: "cell height"},
			{Name: "align_cfg", Kind: Enum, Default: "true", Choices: []string{"true", "false"}, Doc: "both CFG halves keep the unconditional half's base tokens"},
		},
		New: func(v Values, env Env) (Method, error) {
			u, err := newUNetPlan(env)
			if err != nil {
				return nil, err
			}
			m := &daTo{u: u, ratio: v.Float("ratio"), gamma64: v.Float("gamma"), noise: float32(v.Float("noise")),
				sx: v.Int("sx"), sy: v.Int("sy"), align: v.String("align_cfg") == "true", maxDown: v.Int("max_downsample")}
			if m.align && env.Rows%2 != 0 {
				return nil, fmt.Errorf("align_cfg=true pairs the CFG halves, and the batch has %d rows (run with cfg > 1, or align_cfg=false)", env.Rows)
			}
			if err := u.checkCells(m.sx, m.sy, m.maxDown, m.ratio); err != nil {
				return nil, err
			}
			if v.String("strategy") == "released" {
				if env.Steps > len(DaToReleased) {
					return nil, fmt.Errorf("the released strategy has %d entries, the run %d steps (use strategy=uniform)", len(DaToReleased), env.Steps)
				}
				m.strategy = DaToReleased
			} else {
				m.strategy = make([]int, env.Steps+1)
				for c := 1; c <= env.Steps+1; c++ {
					m.strategy[c-1] = map[bool]int{true: 2, false: 1}[c%v.Int("N") == 0]
				}
			}
			return m, nil
		}})
}

// Fit says which models a method plans.
type Fit int

const (
	// Stacks are uniform transformer stacks (DiT, PixArt-α): the zero value.
	Stacks Fit = 1 << iota
	// UNets are Stable Diffusion's UNet (Layout.Blocks set).
	UNets
	// Any model.
	Any = Stacks | UNets
)

// FitsLayout reports whether the method plans a model of this layout.
func (i *Info) FitsLayout(l hook.Layout) bool {
	f := i.Fits
	if f == 0 {
		f = Stacks
	}
	if l.Blocks != nil {
		return f&UNets != 0
	}
	return f&Stacks != 0
}

// unetPlan is what the UNet methods share: the blocks by kind and the reference's block ids.
type unetPlan struct {
	env    Env
	inputs int   // input blocks
	ids    []int // DaTo/DeepCache id of each block: input_blocks[i] → i, middle → 0, output_blocks[j] → inputs−1−j
	middle int   // index of the middle block
}

func newUNetPlan(env Env) (*unetPlan, error) {
	ids, inputs, middle, err := blockIDs(env.Layout)
	if err != nil {
		return nil, err
	}
	return &unetPlan{env: env, ids: ids, inputs: inputs, middle: middle}, nil
}

// blockIDs are the reference wrappers' ids of a UNet's blocks (input_blocks[i] → i, the middle
// block → 0, output_blocks[j] → inputs − 1 − j), with the number of input blocks and the
// middle block's index.
func blockIDs(l hook.Layout) (ids []int, inputs, middle int, err error) {
	if l.Blocks == nil {
		return nil, 0, 0, fmt.Errorf("plans a UNet's blocks, and this model is a uniform transformer stack")
	}
	middle = -1
	for b, bs := range l.Blocks {
		kind, idx, _ := strings.Cut(bs.Name, ".")
		n, _ := strconv.Atoi(idx)
		switch kind {
		case "input_blocks":
			inputs++
			ids = append(ids, n)
		case "middle_block":
			middle = b
			ids = append(ids, 0)
		case "output_blocks":
			ids = append(ids, -1-n) // −1−j until the input blocks are counted
		default:
			return nil, 0, 0, fmt.Errorf("block %d is named %q, not a UNet block", b, bs.Name)
		}
	}
	for b, id := range ids {
		if id < 0 {
			ids[b] = inputs - 1 - (-1 - id)
		}
	}
	if middle < 0 {
		return nil, 0, 0, fmt.Errorf("the UNet has no middle block")
	}
	return ids, inputs, middle, nil
}

// checkCells refuses cells that do not tile a grid the method would prune, and a ratio that would
// drop base (destination) tokens, before any compute.
func (u *unetPlan) checkCells(sx, sy, maxDown int, ratio float64) error {
	for b := range u.env.Layout.Blocks {
		bs := u.env.Layout.Blocks[b]
		if !u.prunable(b, maxDown) {
			continue
		}
		if bs.GridW%sx != 0 || bs.GridH%sy != 0 {
			return fmt.Errorf("cells of %d×%d do not tile block %s's %d×%d tokens", sy, sx, bs.Name, bs.GridH, bs.GridW)
		}
		if k, free := int(float64(bs.Tokens)*ratio), bs.Tokens-bs.Tokens/(sx*sy); k > free {
			return fmt.Errorf("ratio %g drops %d of block %s's %d tokens, and with one base token per %d×%d cell at most %d can go (ratio ≤ %g)",
				ratio, k, bs.Name, bs.Tokens, sy, sx, free, float64(free)/float64(bs.Tokens))
		}
	}
	return nil
}

// prunable reports whether block b has a transformer at most maxDown below full resolution (the
// references' ⌈√(N_full // N)⌉ ≤ max_downsample).
func (u *unetPlan) prunable(b, maxDown int) bool {
	n := u.env.Layout.Blocks[b].Tokens
	if n == 0 {
		return false
	}
	return int(math.Ceil(math.Sqrt(float64(u.env.Layout.Tokens/n)))) <= maxDown
}

// branchPlan is the plan of a call that runs only the blocks with id < v (and, with mid, the
// middle block): every other block outputs its cached output; every block that runs keeps its
// output. v ≥ inputs runs everything.
func (u *unetPlan) branchPlan(v int, mid bool) (*hook.Plan, []bool) {
	l := u.env.Layout
	p := hook.FullPlan(l)
	ran := make([]bool, l.Depth)
	for b := range l.Depth {
		run := u.ids[b] < v
		if b == u.middle {
			run = mid
		}
		if v >= u.inputs {
			run = true
		}
		ran[b] = run
		if run {
			p.Keep = append(p.Keep, hook.Span{From: b, To: b})
		} else {
			p.Skip(hook.SpanSkip{Span: hook.Span{From: b, To: b}, Mode: hook.SkipReplace})
		}
	}
	return p, ran
}

func blockNotes(ran []bool) []Note {
	n := make([]Note, len(ran))
	for b, r := range ran {
		n[b].Type = map[bool]string{true: "run", false: "cached"}[r]
	}
	return n
}

// deepCache is DeepCache's uniform schedule on the UNet.
type deepCache struct {
	u         *unetPlan
	n, branch int
	notes     []Note
}

func (m *deepCache) Plan(call, _ int) (*hook.Plan, error) {
	v := m.u.inputs // full
	if call%m.n != 0 {
		v = m.branch + 1
	}
	p, ran := m.u.branchPlan(v, v >= m.u.inputs)
	m.notes = blockNotes(ran)
	return p, nil
}
func (m *deepCache) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }
func (m *deepCache) Notes() []Note                                   { return m.notes }

// toMe is ToMeSD: merging in the self-attention of every prunable block, every call.
type toMe struct {
	u               *unetPlan
	ratio           float64
	maxDown, sx, sy int
	rand            bool
	notes           []Note
}

func (m *toMe) Plan(call, _ int) (*hook.Plan, error) {
	l := m.u.env.Layout
	p := hook.FullPlan(l)
	ran := make([]bool, l.Depth)
	for b := range l.Depth {
		ran[b] = true
		if !m.u.prunable(b, m.maxDown) {
			continue
		}
		bs := l.Blocks[b]
		cells := make([]int32, (bs.GridH/m.sy)*(bs.GridW/m.sx))
		k := int(float64(bs.Tokens) * m.ratio) // ≤ N − cells (checkCells)
		if k <= 0 {
			continue // tomesd: r ≤ 0 merges nothing and draws nothing
		}
		if m.rand {
			rng := rand.New(rand.NewPCG(uint64(m.u.env.Seed)^0x70e5d, uint64(call)<<16|uint64(b)))
			for i := range cells {
				cells[i] = int32(rng.IntN(m.sx * m.sy))
			}
		}
		p.Blocks[b].Modules[0] = hook.ModulePlan{Action: hook.Prune, Prune: &hook.Pruning{Rule: hook.PruneMerge,
			K: k, SX: m.sx, SY: m.sy, Cells: cells}}
	}
	m.notes = blockNotes(ran)
	return p, nil
}
func (m *toMe) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }
func (m *toMe) Notes() []Note                                   { return m.notes }

// PruneEvent is one block call's pruning by DaTo, in execution order.
type PruneEvent struct {
	Call, Block, K int
	Sign           float64 // the coin flip (< 0.5 flips γ)
	Gamma          float64 // γ as used
	Dynamics       bool    // the score had the model's dynamics (else noise alone)
}

// PruneDraws are DaTo's random draws, replayed in execution order of its prune events: the
// noise per row (the harness's row order) and the coin flip of each event.
type PruneDraws struct {
	Noise [][][]float32
	Sign  []float64
}

// daTo is DaTo: the cache strategy's block skips plus dynamics-aware pruning of the self-attention
// in the full-resolution transformers of the blocks that run.
type daTo struct {
	u               *unetPlan
	strategy        []int
	ratio           float64
	gamma64         float64
	noise           float32
	sx, sy, maxDown int
	align           bool
	replay          *PruneDraws
	events          []PruneEvent
	notes           []Note
}

// Replay makes a DaTo method use recorded draws instead of drawing (runbench sample --replay).
func Replay(m Method, d *PruneDraws) error {
	t, ok := m.(*daTo)
	if !ok {
		return fmt.Errorf("only dato replays recorded draws")
	}
	t.replay = d
	return nil
}

// Events lists a DaTo method's prune events so far (nil for other methods).
func Events(m Method) []PruneEvent {
	if t, ok := m.(*daTo); ok {
		return t.events
	}
	return nil
}

func (m *daTo) Plan(call, _ int) (*hook.Plan, error) {
	v := m.u.inputs // call 0 and values ≥ 2 run everything
	mid := true
	if call > 0 {
		if call-1 >= len(m.strategy) {
			return nil, fmt.Errorf("call %d: the cache strategy has %d entries", call, len(m.strategy))
		}
		if s := m.strategy[call-1]; s < 2 {
			// is_skip_step: a block is cached iff its id ≥ s; the middle block is registered as
			// "mid_block" with id 0, so it is cached only when s = 0.
			v, mid = s, s > 0
		}
	}
	p, ran := m.u.branchPlan(v, mid)
	p.Dynamics = true
	l := m.u.env.Layout
	for b := range l.Depth {
		if !ran[b] || !m.u.prunable(b, m.maxDown) {
			continue
		}
		bs := l.Blocks[b]
		ev := PruneEvent{Call: call, Block: b, K: int(float64(bs.Tokens) * m.ratio), Dynamics: call > 0}
		if ev.K <= 0 {
			continue // dato.py: num_prune ≤ 0 prunes nothing and draws nothing
		}
		var noise [][]float32
		j := len(m.events)
		if m.replay != nil {
			if j >= len(m.replay.Noise) || j >= len(m.replay.Sign) {
				return nil, fmt.Errorf("replay: prune event %d, and the recorded draws hold %d", j, min(len(m.replay.Noise), len(m.replay.Sign)))
			}
			noise, ev.Sign = m.replay.Noise[j], m.replay.Sign[j]
		} else {
			noise, ev.Sign = m.draw(call, b, bs.Tokens)
		}
		ev.Gamma = m.gamma64
		if ev.Sign < 0.5 {
			ev.Gamma = -m.gamma64 // dato.py: diff_gema = −diff_gema if random.random() < 0.5
		}
		m.events = append(m.events, ev)
		p.Blocks[b].Modules[0] = hook.ModulePlan{Action: hook.Prune, Prune: &hook.Pruning{Rule: hook.PruneDynamics,
			K: ev.K, SX: m.sx, SY: m.sy, Gamma: float32(ev.Gamma), NoiseAlpha: m.noise, Noise: noise, Pairs: m.align}}
	}
	m.notes = blockNotes(ran)
	return p, nil
}

// draw is one prune event's noise, per row from (seed, sample index, CFG half, call, block), and its
// coin flip from (seed, call, block): one per block call for the whole batch, as the reference
// draws random.random() once per block call.
func (m *daTo) draw(call, block, n int) ([][]float32, float64) {
	env := m.u.env
	rows := make([][]float32, env.Rows)
	for r := range rows {
		img, half := r, 0
		if len(env.Samples) > 0 {
			img, half = r%len(env.Samples), r/len(env.Samples)
			img = env.Samples[img]
		}
		rng := rand.New(rand.NewPCG(uint64(env.Seed)^0xda70, uint64(img)<<24|uint64(half)<<23|uint64(call)<<8|uint64(block)))
		row := make([]float32, n)
		for i := range row {
			row[i] = float32(rng.NormFloat64())
		}
		rows[r] = row
	}
	coin := rand.New(rand.NewPCG(uint64(env.Seed)^0xc017, uint64(call)<<8|uint64(block)))
	return rows, coin.Float64()
}

func (m *daTo) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }
func (m *daTo) Notes() []Note                                   { return m.notes }
