package methods

import (
	"fmt"
	"math"
	"slices"

	"github.com/cachebench/cachebench/harness/hook"
)

// decideParam is the `decide` parameter of the gate methods.
var decideParam = Param{Name: "decide", Kind: Enum, Default: "per-batch", Choices: []string{"per-batch", "per-sample"},
	Doc: "per-batch: one statistic pooled over the batch and one decision for every row (the reference codes); per-sample: every row decided alone, so an image does not depend on its batch"}

// gated is the plumbing the gate methods share: every call carries a hook.Gate over the same
// range (also where the method will not skip, so that the executor keeps the statistic's
// reference and the range's residual current), decisions are made per unit (the batch, or one
// row), and the notes say what ran.
type gated struct {
	env      Env
	span     hook.Span
	stat     hook.GateStat
	perBatch bool
	asked    []bool // the units Decide let skip at this call; nil until it is asked
	notes    []Note
}

func newGated(env Env, span hook.Span, stat hook.GateStat, decide string) gated {
	return gated{env: env, span: span, stat: stat, perBatch: decide == "per-batch"}
}

// units is the number of independent decisions per call.
func (g *gated) units() int {
	if g.perBatch {
		return 1
	}
	return g.env.Rows
}

// plan returns a full plan whose range is gated by decide (statistic per unit → skip per unit).
func (g *gated) plan(decide func(stat []float64) []bool) *hook.Plan {
	p := hook.FullPlan(g.env.Layout)
	// Only the range's residual is reused; module outputs would be cache memory nothing reads.
	p.RangesOnly = true
	g.asked = nil
	g.notes = notes(g.env.Layout.Depth, "full")
	p.Gate = &hook.Gate{Span: g.span, Stat: g.stat, PerBatch: g.perBatch,
		Decide: func(stat []float64) ([]bool, error) {
			if len(stat) != g.units() {
				return nil, fmt.Errorf("%d statistics, want %d (%s over %d rows)", len(stat), g.units(), map[bool]string{true: "per-batch", false: "per-sample"}[g.perBatch], g.env.Rows)
			}
			if g.asked != nil {
				return nil, fmt.Errorf("the gate was asked twice in one call")
			}
			g.asked = decide(stat)
			return slices.Clone(g.asked), nil
		}}
	return p
}

// outcome returns, per unit, whether it skipped the range at the call that carried p out, and
// notes the gated blocks: "skip" (every row skipped), "mixed" (some rows did, per-sample) or
// "full". A plan the executor did not run (a dry run) skipped nothing.
func (g *gated) outcome(p *hook.Plan) ([]bool, error) {
	out := make([]bool, g.units())
	gt := p.Gate
	if gt == nil || gt.Skipped == nil {
		return out, nil
	}
	if len(gt.Skipped) != g.env.Rows {
		return nil, fmt.Errorf("the gate reports %d rows, the batch has %d", len(gt.Skipped), g.env.Rows)
	}
	n := 0
	for r, s := range gt.Skipped {
		u := r
		if g.perBatch {
			u = 0
			if s != gt.Skipped[0] {
				return nil, fmt.Errorf("a per-batch gate skipped row %d and not row 0 (or the reverse)", r)
			}
		}
		if s && (g.asked == nil || !g.asked[u]) {
			return nil, fmt.Errorf("row %d skipped the range, which the method did not ask for", r)
		}
		if s {
			out[u] = true
			n++
		}
	}
	typ := "full"
	switch {
	case n == g.env.Rows:
		typ = "skip"
	case n > 0:
		typ = "mixed"
	}
	for b := g.span.From; b <= g.span.To; b++ {
		g.notes[b].Type = typ
	}
	return out, nil
}

func (g *gated) Notes() []Note { return g.notes }

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
