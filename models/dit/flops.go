package dit

import "github.com/cachebench/cachebench/harness/hook"

// BlockFLOPs counts the FLOPs of each block under a plan for a batch of rows, with the counter
// of the official ToCa DiT code (the convention the ToCa/DuCa/FORA papers report):
//
//	full block:   2BNC (two LayerNorms) + BC + 6BC² (adaLN)
//	              + 6BNC² + BHNd + 2BHN²d + 5BHN² + 2BHN²d + 2BNC² (attention)
//	              + 16BNC² + 24BNC (MLP)
//	reused attention: 0;  MLP on k tokens: 16BkC² + 24BkC (k = 0 for a reused MLP)
//	predicted module: 0, like a reused one; a block predicting both modules (TaylorSeer's Taylor
//	              step) costs only its adaLN, BC + 6BC², as TaylorSeer's counter bills no LayerNorm there
//	skipped block: 0 (DuCa's counter bills nothing for its aggressive, skipped blocks)
//
// Embedders, final layer, sampler and a method's own arithmetic (Taylor sums) are not counted (the
// papers do not count them).
func (c Config) BlockFLOPs(p *hook.Plan, rows int) []int64 {
	B, N, C, H := int64(rows), int64(c.Tokens()), int64(c.Hidden), int64(c.Heads)
	d := C / H
	out := make([]int64, len(p.Blocks))
	for i, bp := range p.Blocks {
		attn, mlp := bp.Modules[0], bp.Modules[1]
		if attn.Action == hook.Skip && mlp.Action == hook.Skip {
			continue
		}
		f := 2*B*N*C + B*C + 6*B*C*C // norms and adaLN: billed whenever the block runs
		if attn.Action == hook.Predict && mlp.Action == hook.Predict {
			f = B*C + 6*B*C*C // TaylorSeer's counter bills a Taylor block's adaLN only
		}
		if attn.Action == hook.Full {
			f += 6*B*N*C*C + B*H*N*d + 2*B*H*N*N*d + 5*B*H*N*N + 2*B*H*N*N*d + 2*B*N*C*C
		}
		switch mlp.Action {
		case hook.Full:
			f += 16*B*N*C*C + 24*B*N*C
		case hook.Partial:
			k := int64(mlp.Fresh())
			f += 16*B*k*C*C + 24*B*k*C
		}
		out[i] = f
	}
	return out
}
