package pixart

import "github.com/cachebench/cachebench/harness/hook"

// BlockFLOPs counts the FLOPs of each block under a plan for a batch of rows, following the
// per-block counter of the official DuCa-PixArt-alpha code (test_FLOPs), with B rows, N tokens,
// C hidden, h heads and L caption tokens per row:
//
//	any block that runs: 2BNC (two LayerNorms) + BC + 6BC² (adaLN)
//	self-attention (Full): 6BNC² + BNC + 2BN²C + 5BhN² + 2BN²C + 2BNC²
//	cross-attention on nq query tokens (Full: N, Partial: k):
//	              2B·nq·C² + 4B·L·C² + B·nq·C + B·h·nq·L + 2B·nq·L·C + 5B·h·nq·L + 2B·nq·L·C + 2B·nq·C²
//	MLP on n tokens (Full: N, Partial: k): 16BnC² + 24BnC (the official literals, for mlp_ratio 4)
//	reused or predicted module, partial module with k = 0: 0;  skipped block: 0
//
// Two departures from the official counter. L is the model's maximum caption length, where the
// official counts the actual Σ y_lens: plans do not know the captions, so this is an upper bound.
// The official flattens the batch into one query sequence for the cross-attention and so counts
// its projections and scores B times over; here every term is per row, times B, as the
// self-attention's are.
//
// A partial self-attention is not billed: no PixArt method plans one and the official counter
// has no term for it. Embedders, final layer, sampler and a method's own arithmetic are not
// counted (the papers do not count them).
func (c Config) BlockFLOPs(p *hook.Plan, rows int) []int64 {
	B, N, C, h, L := int64(rows), int64(c.Tokens()), int64(c.Hidden), int64(c.Heads), int64(c.MaxLength)
	cross := func(nq int64) int64 {
		if nq == 0 {
			return 0 // the official skips the module call, key/value projections included
		}
		return 2*B*nq*C*C + 4*B*L*C*C + B*nq*C + B*h*nq*L + 2*B*nq*L*C + 5*B*h*nq*L + 2*B*nq*L*C + 2*B*nq*C*C
	}
	mlp := func(n int64) int64 { return 16*B*n*C*C + 24*B*n*C }
	tokens := func(mp hook.ModulePlan) int64 {
		switch mp.Action {
		case hook.Full:
			return N
		case hook.Partial:
			return int64(mp.Fresh())
		}
		return 0
	}
	out := make([]int64, len(p.Blocks))
	for i, bp := range p.Blocks {
		skipped := true
		for _, mp := range bp.Modules {
			skipped = skipped && mp.Action == hook.Skip
		}
		if skipped {
			continue
		}
		attn, ca, ff := bp.Modules[0], bp.Modules[1], bp.Modules[2]
		f := 2*B*N*C + B*C + 6*B*C*C
		if attn.Action == hook.Full {
			f += 6*B*N*C*C + B*N*C + 2*B*N*N*C + 5*B*h*N*N + 2*B*N*N*C + 2*B*N*C*C
		}
		f += cross(tokens(ca)) + mlp(tokens(ff))
		out[i] = f
	}
	return out
}
