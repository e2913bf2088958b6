package executor

import (
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
)

// gated carries out a plan's gate (hook.Gate) on the stream h entering its range: it measures
// the statistic against the cached reference, reads it on the host (one number per row: the
// reference codes read theirs with .item()), asks the method which rows skip, runs the range on
// the other rows only (a gather of rows, as a partial module gathers tokens) and adds the stored
// residual to the skipped ones. It takes ownership of h and returns the stream after the range.
func (e *Executor) gated(g *hook.Gate, h, h0 *tensors.Tensor, cond []*tensors.Tensor, plan *hook.Plan, opt hook.Options) *tensors.Tensor {
	c := opt.Cache
	rows := h.Shape().Dimensions[0]
	gc := c.Gate(g.Span)
	if gc != nil && gc.Residual != nil && gc.Residual.Shape().Dimensions[0] != rows {
		panic(fmt.Errorf("gate over blocks %d..%d: the cache holds %d rows, this call has %d", g.Span.From, g.Span.To, gc.Residual.Shape().Dimensions[0], rows))
	}
	cur := e.gateStatistic(g, h, h0, cond)
	var ref *tensors.Tensor
	if gc != nil {
		ref = gc.Ref
	}
	stats := e.relativeL1(cur, ref, rows, g.PerBatch)
	skips, err := g.Decide(stats)
	if err != nil {
		panic(fmt.Errorf("gate over blocks %d..%d: %w", g.Span.From, g.Span.To, err))
	}
	if len(skips) != len(stats) {
		panic(fmt.Errorf("gate over blocks %d..%d: %d decisions for %d statistics", g.Span.From, g.Span.To, len(skips), len(stats)))
	}
	skipped := make([]bool, rows)
	var ran []int32
	for r := range rows {
		skipped[r] = skips[min(r, len(skips)-1)]
		if skipped[r] && (gc == nil || gc.Residual == nil) {
			panic(fmt.Errorf("gate over blocks %d..%d: row %d skips, and no residual is stored for it yet", g.Span.From, g.Span.To, r))
		}
		if !skipped[r] {
			ran = append(ran, int32(r))
		}
	}
	g.Skipped, g.Stats = skipped, stats

	var out, residual *tensors.Tensor
	switch {
	case len(ran) == rows:
		out = e.runRange(g.Span, h, cond, plan, opt, false)
		residual = e.Family("gate/sub", func(in []*Node) []*Node { return []*Node{Sub(in[0], in[1])} }).Run(out, h)[0]
	case len(ran) == 0:
		out = e.Family("gate/add", func(in []*Node) []*Node { return []*Node{Add(in[0], in[1])} }).Run(h, gc.Residual)[0]
	default:
		out, residual = e.runRows(g.Span, h, gc.Residual, cond, plan, opt, ran)
	}
	// The new reference: TeaCache's is this call's input wherever the range ran or not; the
	// residual gate's is replaced only where the range ran (rows that skipped keep comparing
	// against the residual their cached output came from).
	newRef := cur
	if g.Stat == hook.StatResidual && ref != nil && len(ran) < rows {
		newRef = e.mergeRows(cur, ref, ran, rows)
		cur.MustFinalizeAll()
	}
	switch {
	case residual == nil: // nothing ran: keep the stored residual
		c.SetGate(g.Span, gc.Residual, newRef)
	default:
		c.SetGate(g.Span, residual, newRef)
	}
	if opt.Modules != nil {
		for b := g.Span.From; b <= g.Span.To; b++ {
			for mi, mod := range e.layout.Modules {
				opt.Modules(b, mod, plan.Blocks[b].Modules[mi].Action, 0, nil)
			}
		}
	}
	if out != h {
		h.MustFinalizeAll()
	}
	return out
}

// gateStatistic computes the tensor the gate compares: the first module's input of the range's
// first block (TeaCache), or the residual of the blocks before the range (FBCache).
func (e *Executor) gateStatistic(g *hook.Gate, h, h0 *tensors.Tensor, cond []*tensors.Tensor) *tensors.Tensor {
	if g.Stat == hook.StatResidual {
		return e.Family("gate/sub", func(in []*Node) []*Node { return []*Node{Sub(in[0], in[1])} }).Run(h, h0)[0]
	}
	nc := len(cond)
	fam := e.Family(fmt.Sprintf("gate/input/%d", nc), func(in []*Node) []*Node {
		return []*Node{e.net.Block(in[1+nc:], in[1:1+nc]).Input(in[0])}
	})
	args := append([]any{h}, anyOf(cond)...)
	return fam.Run(append(args, anyOf(e.net.BlockWeights(g.Span.From))...)...)[0]
}

// relativeL1 is mean|v − ref| / mean|ref| per row, or over the batch when pooled; +Inf without a
// reference. Sums run on the device; only two numbers per row reach the host.
func (e *Executor) relativeL1(v, ref *tensors.Tensor, rows int, pooled bool) []float64 {
	n := rows
	if pooled {
		n = 1
	}
	out := make([]float64, n)
	if ref == nil {
		for i := range out {
			out[i] = math.Inf(1)
		}
		return out
	}
	fam := e.Family("gate/l1", func(in []*Node) []*Node {
		d := Abs(Sub(in[0], in[1]))
		r := Abs(in[1])
		flat := func(x *Node) *Node { return Reshape(x, rows, -1) }
		return []*Node{ReduceSum(flat(d), -1), ReduceSum(flat(r), -1)}
	})
	sums := fam.Run(v, ref)
	num, den := tensors.MustCopyFlatData[float32](sums[0]), tensors.MustCopyFlatData[float32](sums[1])
	sums[0].MustFinalizeAll()
	sums[1].MustFinalizeAll()
	if pooled {
		var a, b float64
		for r := range rows {
			a, b = a+float64(num[r]), b+float64(den[r])
		}
		out[0] = a / b
		return out
	}
	for r := range rows {
		out[r] = float64(num[r]) / float64(den[r])
	}
	return out
}

// runRange runs the gated blocks as planned (full, nothing cached) on h, which it does not release.
func (e *Executor) runRange(s hook.Span, h *tensors.Tensor, cond []*tensors.Tensor, plan *hook.Plan, opt hook.Options, sub bool) *tensors.Tensor {
	ropt := opt
	ropt.Cache = nil
	if sub {
		// A sub-batch is not the batch the recorder and the probes describe.
		ropt.Modules, ropt.Probe = nil, nil
	}
	cur := h
	for b := s.From; b <= s.To; b++ {
		next := e.block(b, cur, cond, &plan.Blocks[b], ropt, false)
		if cur != h {
			cur.MustFinalizeAll()
		}
		cur = next
		if ropt.Probe != nil {
			ropt.Probe(fmt.Sprintf("block_%d", b), cur)
		}
	}
	return cur
}

// runRows runs the range on the rows ran of h only and returns the whole batch after the range
// (stored residual added on the other rows) and the new residual (fresh on the rows that ran).
func (e *Executor) runRows(s hook.Span, h, residual *tensors.Tensor, cond []*tensors.Tensor, plan *hook.Plan, opt hook.Options, ran []int32) (out, newResidual *tensors.Tensor) {
	rows := h.Shape().Dimensions[0]
	idx := tensors.FromFlatDataAndDimensions(ran, len(ran))
	pick := func(t *tensors.Tensor) *tensors.Tensor {
		key := fmt.Sprintf("gate/rows/%d", t.Rank())
		return e.Family(key, func(in []*Node) []*Node { return []*Node{Gather(in[0], InsertAxes(in[1], -1))} }).Run(t, idx)[0]
	}
	hSub := pick(h)
	condSub := make([]*tensors.Tensor, len(cond))
	for i, t := range cond {
		condSub[i] = pick(t)
	}
	outSub := e.runRange(s, hSub, condSub, plan, opt, true)
	// inv sends row r to its sub-batch position j (< K) or to K + r (its old value).
	K := len(ran)
	inv := make([]int32, rows)
	for r := range inv {
		inv[r] = int32(K + r)
	}
	for j, r := range ran {
		inv[r] = int32(j)
	}
	res := e.Family("gate/merge", func(in []*Node) []*Node {
		h, old, hs, os, inv := in[0], in[1], in[2], in[3], in[4]
		gather := func(fresh, stale *Node) *Node {
			return Gather(Concatenate([]*Node{fresh, stale}, 0), InsertAxes(inv, -1))
		}
		return []*Node{gather(os, Add(h, old)), gather(Sub(os, hs), old)}
	}).Run(h, residual, hSub, outSub, tensors.FromFlatDataAndDimensions(inv, rows))
	for _, t := range append(condSub, hSub, outSub) {
		t.MustFinalizeAll()
	}
	return res[0], res[1]
}

// mergeRows takes rows ran from fresh and the others from old (both [B, …]).
func (e *Executor) mergeRows(fresh, old *tensors.Tensor, ran []int32, rows int) *tensors.Tensor {
	mask := make([]bool, rows)
	for _, r := range ran {
		mask[r] = true
	}
	return e.Family("gate/where", func(in []*Node) []*Node {
		m := in[2]
		for m.Rank() < in[0].Rank() {
			m = InsertAxes(m, -1)
		}
		return []*Node{Where(BroadcastToDims(m, in[0].Shape().Dimensions...), in[0], in[1])}
	}).Run(fresh, old, tensors.FromFlatDataAndDimensions(mask, rows))[0]
}
