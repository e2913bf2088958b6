package methods

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "deltadit", Doc: "Δ-DiT (Chen et al. 2024): between full steps every N steps, a contiguous range of blocks is replaced by " +
		"its residual (output − input) from the last full step added to its new input; early steps (step index > boundary) " +
		"cache the rear blocks, late steps the front blocks. There is no official code: full steps follow FORA's rule " +
		"(s = S−1 or s mod N = 0), the boundary is a step index s (counting down from S−1, as every DiT method here), " +
		"and blocks outside the cached range are computed in full",
		Params: []Param{
			{Name: "N", Kind: Int, Default: "2", Min: 1, Max: 1000, Doc: "cache interval: full steps at s = S−1 and s mod N = 0, cached steps in between"},
			{Name: "boundary", Kind: Int, Default: "-1", Min: -1, Max: 100000,
				Doc: "stage boundary b as a step index (steps count down from S−1): steps s > b are early and cache the rear blocks, s ≤ b the front blocks; −1 = the middle step ⌊S/2⌋"},
			{Name: "blocks", Kind: Int, Default: "-1", Min: -1, Max: 100000, Doc: "number of cached blocks, 1..depth; −1 = half the depth ⌊L/2⌋"},
		},
		New: func(v Values, env Env) (Method, error) {
			depth, steps := env.Layout.Depth, env.Steps
			b := v.Int("boundary")
			if b == -1 {
				b = steps / 2
			}
			if b >= steps {
				return nil, fmt.Errorf("boundary %d is not a step index of a %d-step run (0..%d, or −1 for the middle)", b, steps, steps-1)
			}
			k := v.Int("blocks")
			if k == -1 {
				k = max(1, depth/2)
			}
			if k < 1 || k > depth {
				return nil, fmt.Errorf("blocks=%d cached blocks do not fit a model of depth %d (want 1..%d, or −1 for half)", k, depth, depth)
			}
			m := &deltaDiT{env: env, n: v.Int("N"), boundary: b,
				front: hook.Span{From: 0, To: k - 1}, rear: hook.Span{From: depth - k, To: depth - 1}}
			return m, nil
		}})
}

// deltaDiT is Δ-DiT on the hook surface (docs/methods.md). Full steps compute every block and keep the
// input and output of both candidate ranges, so a cached step on either side of the boundary
// finds the residual of the last full step; a cached step skips its stage's range with
// SkipResidual (x_out = x_in + Δ) and computes the other blocks.
type deltaDiT struct {
	env         Env
	n           int
	boundary    int
	front, rear hook.Span
	notes       []Note
}

func (m *deltaDiT) Plan(_, step int) (*hook.Plan, error) {
	l := m.env.Layout
	p := hook.FullPlan(l)
	p.RangesOnly = true // only the ranges' residuals are reused
	if step == m.env.Steps-1 || step%m.n == 0 {
		p.Keep = []hook.Span{m.front}
		if m.rear != m.front {
			p.Keep = append(p.Keep, m.rear)
		}
		m.notes = notes(l.Depth, "full")
		return p, nil
	}
	// Δ-DiT's reading of the stages: early steps shape the outline (front blocks), so the rear
	// (detail) blocks can be cached; late steps refine details, so the front blocks can.
	sp := m.front
	if step > m.boundary {
		sp = m.rear
	}
	p.Skip(hook.SpanSkip{Span: sp, Mode: hook.SkipResidual})
	m.notes = notes(l.Depth, "full")
	for b := sp.From; b <= sp.To; b++ {
		m.notes[b].Type = "delta"
	}
	return p, nil
}

func (m *deltaDiT) Observe(int, int, *hook.Plan, *hook.Cache) error { return nil }

func (m *deltaDiT) Notes() []Note { return m.notes }
