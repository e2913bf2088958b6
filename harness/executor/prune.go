package executor

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
)

// PruneSpec is the compiled form of a Prune rule: what fixes a graph's shape and constants. The
// draws of each call (noise, destination cells) and the dynamics are graph inputs (PruneArgs).
type PruneSpec struct {
	Rule         hook.PruneRule
	K            int // tokens dropped per row
	SX, SY       int
	GridH, GridW int
	Gamma, Alpha float32
	Dynamics     bool // PruneDynamics with the model's dynamics D (else the score is the noise)
	Pairs        bool
}

// PruneArgs returns the spec of a Prune action on a block of shape bs and its inputs, in the
// order Prune reads them: PruneDynamics → noise [B, N] then, with dynamics, D [B, N];
// PruneMerge → the destination cells (int32). dyn is the cache's Dynamics (nil = none yet).
func PruneArgs(p *hook.Pruning, bs hook.BlockShape, dyn *tensors.Tensor) (PruneSpec, []any, error) {
	s := PruneSpec{Rule: p.Rule, K: p.K, SX: p.SX, SY: p.SY, GridH: bs.GridH, GridW: bs.GridW,
		Gamma: p.Gamma, Alpha: p.NoiseAlpha, Pairs: p.Pairs}
	if bs.GridH%p.SY != 0 || bs.GridW%p.SX != 0 {
		// The references leave a remainder strip out of every cell; no setting we reproduce has one.
		return s, nil, fmt.Errorf("prune cells of %d×%d do not tile the %d×%d token grid", p.SY, p.SX, bs.GridH, bs.GridW)
	}
	switch p.Rule {
	case hook.PruneDynamics:
		args := []any{tensors.FromFlatDataAndDimensions(flatten(p.Noise), len(p.Noise), bs.Tokens)}
		if dyn != nil {
			if d := dyn.Shape().Dimensions; len(d) != 2 || d[0] != len(p.Noise) || d[1] != bs.Tokens {
				return s, nil, fmt.Errorf("dynamics of shape %v for %d rows of %d tokens (DaTo prunes only blocks at the output's resolution)", d, len(p.Noise), bs.Tokens)
			}
			s.Dynamics = true
			args = append(args, dyn)
		}
		return s, args, nil
	case hook.PruneMerge:
		return s, []any{append([]int32(nil), p.Cells...)}, nil
	}
	return s, nil, fmt.Errorf("prune with unknown rule %d", p.Rule)
}

// NumArgs is how many inputs the rule's graph reads.
func (s PruneSpec) NumArgs() int {
	if s.Rule == hook.PruneDynamics && s.Dynamics {
		return 2
	}
	return 1
}

// Pruned is a Prune rule's choice inside a graph.
type Pruned struct {
	// Shrink maps a stream [B, N, C] to the rows the module runs on [B, N−K, C] (kept tokens in
	// token order; merged destinations averaged with their sources).
	Shrink func(x *Node) *Node
	// Expand maps the module's output [B, N−K, C] back to every token [B, N, C].
	Expand func(out *Node) *Node
	// Base marks the base (destination) tokens and Dropped the dropped (merged) ones, [B, N];
	// Source [B, N] (int32) is the token whose output each token receives (itself if kept).
	Base, Dropped, Source *Node
}

// Prune builds the rule's choice from the metric x [B, N, C] (the block's input stream) and its
// inputs (PruneArgs' order).
func Prune(s PruneSpec, x *Node, in []*Node) Pruned {
	g := x.Graph()
	d := x.Shape().Dimensions
	B, N := d[0], d[1]
	norm := Sqrt(ReduceAndKeep(Square(x), ReduceSum, -1))
	var base *Node
	switch s.Rule {
	case hook.PruneDynamics:
		// DaTo rounds the norm to float16 before dividing (dato.py: my_norm.to(torch.float16)).
		norm = roundFloat16(norm)
		score := in[0]
		if s.Dynamics {
			score = Add(MulScalar(in[1], float64(s.Gamma)), MulScalar(in[0], float64(s.Alpha)))
		}
		k := cellArgMax(score, s) // [B, cells]
		if s.Pairs {
			null := Slice(k, AxisRange(B/2, B))
			k = Concatenate([]*Node{null, null}, 0)
		}
		base = cellMask(k, s)
	case hook.PruneMerge:
		cells := in[0]
		base = cellMask(BroadcastToDims(InsertAxes(cells, 0), B, cells.Shape().Dimensions[0]), s)
	default:
		panic(fmt.Sprintf("executor: prune with unknown rule %d", s.Rule))
	}
	xn := Div(x, norm)
	sim := Einsum("bnc,bmc->bnm", xn, xn) // G[b, i, j]
	negInf := Scalar(g, x.DType(), math.Inf(-1))
	// Each non-base token's best base: its similarity and (for merging) the base token itself.
	toBase := Where(BroadcastToDims(InsertAxes(base, 1), B, N, N), sim, BroadcastToDims(negInf, B, N, N))
	best := ReduceMax(toBase, -1)
	bestIdx := firstArgMax(toBase)
	best = Where(base, BroadcastToDims(negInf, B, N), best) // base tokens are never dropped
	dropped := LessThan(rankDescending(best), Scalar(g, dtypes.Int32, s.K))
	kept := LogicalNot(dropped)
	tokens := Iota(g, shapes.Make(dtypes.Int32, B, N), 1)
	var source *Node
	if s.Rule == hook.PruneDynamics {
		// A dropped token p takes the output of the kept token q with the largest G[q, p].
		fromKept := Where(BroadcastToDims(InsertAxes(kept, 1), B, N, N), Transpose(sim, 1, 2), BroadcastToDims(negInf, B, N, N))
		source = Where(dropped, firstArgMax(fromKept), tokens)
	} else {
		source = Where(dropped, bestIdx, tokens)
	}
	// Kept tokens take slots 0…N−K−1 in token order.
	keptI := ConvertDType(kept, dtypes.Int32)
	slot := exclusivePrefixSum(keptI)
	order := argsort(Where(kept, slot, Add(Scalar(g, dtypes.Int32, N-s.K), exclusivePrefixSum(ConvertDType(dropped, dtypes.Int32)))))
	keptIdx := Slice(order, AxisRange(), AxisRange(0, N-s.K))
	srcSlot := GatherRows(InsertAxes(slot, -1), source) // slot of each token's source
	srcSlot = Reshape(srcSlot, B, N)
	p := Pruned{Base: base, Dropped: dropped, Source: source}
	p.Expand = func(out *Node) *Node { return GatherRows(out, srcSlot) }
	if s.Rule == hook.PruneDynamics {
		p.Shrink = func(y *Node) *Node { return GatherRows(y, keptIdx) }
		return p
	}
	p.Shrink = func(y *Node) *Node {
		// scatter_reduce(mean, include_self): a destination averages itself and its sources.
		C := y.Shape().Dimensions[2]
		bIdx := Iota(g, shapes.Make(dtypes.Int32, B, N), 0)
		at := Stack([]*Node{bIdx, source}, -1)
		mask := ConvertDType(dropped, y.DType())
		wide := BroadcastToDims(InsertAxes(mask, -1), B, N, C)
		sum := ScatterSum(Mul(y, OneMinus(wide)), at, Mul(y, wide), false, false)
		count := ScatterSum(OnesLike(mask), at, mask, false, false)
		return GatherRows(Div(sum, BroadcastToDims(InsertAxes(count, -1), B, N, C)), keptIdx)
	}
	return p
}

// roundFloat16 rounds non-negative float32 values to the nearest float16 (ties to even), as
// tensor.to(torch.float16) does, in float32 arithmetic that every backend has (the pure-Go one
// converts no float16 and has no bitcast): the value divided by its float16 spacing 2^(e−10)
// (e its binary exponent, the spacing at least the subnormal step 2^−24) is rounded to an
// integer, ties to even; beyond float16's range it is +Inf. The exponent from the logarithm is
// corrected by one where the logarithm rounded across a power of two.
func roundFloat16(v *Node) *Node {
	g := v.Graph()
	dims := v.Shape().Dimensions
	c := func(x float64) *Node { return BroadcastToDims(Scalar(g, dtypes.Float32, x), dims...) }
	safe := Max(v, c(math.Ldexp(1, -24)))
	e := Floor(DivScalar(Log(safe), math.Ln2))
	pow := func(e *Node) *Node { return Pow(c(2), e) }
	e = Where(LessThan(safe, pow(e)), Sub(e, c(1)), e)
	e = Where(GreaterOrEqual(safe, pow(Add(e, c(1)))), Add(e, c(1)), e)
	spacing := pow(Max(Sub(e, c(10)), c(-24)))
	q := Div(v, spacing) // exact: a power of two
	f := Floor(q)
	odd := Sub(f, MulScalar(Floor(DivScalar(f, 2)), 2))
	half := Sub(q, f)
	// Round to nearest, ties to even (the backends' Round is not always half-even).
	n := Where(GreaterThan(half, c(0.5)), Add(f, c(1)), Where(LessThan(half, c(0.5)), f, Add(f, odd)))
	r := Mul(n, spacing)
	return Where(GreaterThan(r, c(65504)), c(math.Inf(1)), r)
}

// cellArgMax is, per row, the position (dy·SX + dx) of the highest score in every SY×SX cell of
// the token grid, the first on ties (torch max): [B, cells] int32, cells row-major.
func cellArgMax(score *Node, s PruneSpec) *Node {
	B := score.Shape().Dimensions[0]
	hs, ws := s.GridH/s.SY, s.GridW/s.SX
	cells := Reshape(TransposeAllAxes(Reshape(score, B, hs, s.SY, ws, s.SX), 0, 1, 3, 2, 4), B, hs*ws, s.SY*s.SX)
	return firstArgMax(cells)
}

// cellMask marks the token at position k[b, cell] of every cell: [B, N] bool.
func cellMask(k *Node, s PruneSpec) *Node {
	g := k.Graph()
	B, cells := k.Shape().Dimensions[0], k.Shape().Dimensions[1]
	pos := Iota(g, shapes.Make(dtypes.Int32, B, cells, s.SY*s.SX), 2)
	hit := Equal(pos, BroadcastToDims(InsertAxes(ConvertDType(k, dtypes.Int32), -1), B, cells, s.SY*s.SX))
	hs, ws := s.GridH/s.SY, s.GridW/s.SX
	return Reshape(TransposeAllAxes(Reshape(hit, B, hs, ws, s.SY, s.SX), 0, 1, 3, 2, 4), B, s.GridH*s.GridW)
}

// exclusivePrefixSum is, over the last axis of an integer [B, N], the sum of the elements before
// each one. GoMLX's CumSum is a sum pool whose window spans the axis (O(N²) per row, and the
// pure-Go backend walks it element by element); log₂N shifted adds give the same integers.
func exclusivePrefixSum(x *Node) *Node {
	d := x.Shape().Dimensions
	n := d[len(d)-1]
	zero := func(k int) *Node {
		return Zeros(x.Graph(), shapes.Make(x.DType(), append(append([]int(nil), d[:len(d)-1]...), k)...))
	}
	shift := func(y *Node, k int) *Node { // y moved k places right along the last axis, zeros in
		return Concatenate([]*Node{zero(k), Slice(y, AxisRange().Spacer(), AxisRange(0, n-k))}, -1)
	}
	if n == 1 {
		return zero(1)
	}
	y := shift(x, 1)
	for k := 1; k < n; k *= 2 {
		y = Add(y, shift(y, k))
	}
	return y
}

// firstArgMax is the index of the largest value over the last axis, the first on ties (int32).
func firstArgMax(x *Node) *Node {
	g := x.Graph()
	d := x.Shape().Dimensions
	n := d[len(d)-1]
	idx := Iota(g, shapes.Make(dtypes.Int32, d...), len(d)-1)
	isMax := Equal(x, ReduceAndKeep(x, ReduceMax, -1))
	return ReduceMin(Where(isMax, idx, BroadcastToDims(Scalar(g, dtypes.Int32, n), d...)), -1)
}

// PruneChoice runs a Prune rule on the metric [B, N, C] on the host's behalf and returns, per row,
// the base tokens, the dropped tokens (both ascending) and every token's source: for tests and
// traces (a run keeps the choice inside the block graph).
func PruneChoice(b backends.Backend, s PruneSpec, metric *tensors.Tensor, args []any) (base, dropped, source [][]int32, err error) {
	err = gx.Catch(func() {
		e := MustNewExec(b, func(in []*Node) []*Node {
			p := Prune(s, in[0], in[1:])
			return []*Node{p.Base, p.Dropped, p.Source}
		})
		outs := e.MustExec(append([]any{metric}, args...)...)
		defer func() {
			for _, t := range outs {
				t.MustFinalizeAll()
			}
		}()
		N := metric.Shape().Dimensions[1]
		base, dropped = marked(tensors.MustCopyFlatData[bool](outs[0]), N), marked(tensors.MustCopyFlatData[bool](outs[1]), N)
		flat := tensors.MustCopyFlatData[int32](outs[2])
		for r := 0; r < len(flat)/N; r++ {
			source = append(source, flat[r*N:(r+1)*N])
		}
	})
	return base, dropped, source, err
}

// marked lists the true positions of every row of flat [B, N].
func marked(flat []bool, n int) [][]int32 {
	out := make([][]int32, len(flat)/n)
	for r := range out {
		out[r] = []int32{}
		for i, v := range flat[r*n : (r+1)*n] {
			if v {
				out[r] = append(out[r], int32(i))
			}
		}
	}
	return out
}
