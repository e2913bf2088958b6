package unet

import "github.com/cachebench/cachebench/harness/hook"

// BlockFLOPs counts a plan's FLOPs per block for rows batch rows (hook.FLOPsCounter): 2 per
// multiply-add of every convolution, linear layer and attention product, as the ToMeSD and DaTo
// papers count (normalisations, activations, softmax and the skip concatenation are left out).
// A skipped block costs nothing; a pruned module runs on the kept tokens and its rule's
// similarity graph is counted (DaTo: the whole N×N graph; ToMeSD: sources × destinations).
// The last entry also carries the time embedding and the output head, which run at every call.
func (d *Denoiser) BlockFLOPs(p *hook.Plan, rows int) []int64 {
	m := d.m
	out := make([]int64, len(m.blocks))
	L := int64(max(d.tokens, 1))
	for i, bk := range m.blocks {
		if p != nil {
			if _, skipped := p.SkipAt(i); skipped {
				continue
			}
		}
		side := int64(d.size / bk.Factor)
		hw := side * side
		var f int64
		conv := func(n, cin, cout int64) int64 { return 2 * n * 9 * cin * cout }
		ch := int64(bk.InChannels + bk.SkipChannels)
		for _, layer := range bk.Layers {
			cout := int64(bk.OutChannels)
			switch layer {
			case LayerConvIn:
				f += conv(hw, ch, cout)
			case LayerRes:
				f += conv(hw, ch, cout) + 2*int64(m.TimeEmbedDim)*cout + conv(hw, cout, cout)
				if ch != cout {
					f += 2 * hw * ch * cout
				}
			case LayerAttn:
				var mp []hook.ModulePlan
				if p != nil {
					mp = p.Blocks[i].Modules
				}
				f += d.transformerFLOPs(hw, int64(bk.OutChannels), L, mp)
			case LayerDown:
				f += conv(hw/4, ch, cout)
			case LayerUp:
				f += conv(hw*4, ch, cout)
			}
			ch = cout
		}
		out[i] = f * int64(rows)
	}
	mc, te := int64(m.ModelChannels), int64(m.TimeEmbedDim)
	s := int64(d.size)
	head := 2*(mc*te+te*te) + 2*s*s*9*mc*int64(m.OutChannels)
	out[len(out)-1] += head * int64(rows)
	return out
}

// transformerFLOPs is one SpatialTransformer on n tokens of c channels with a context of L
// tokens, under the block's module plan (Modules order; nil = full).
func (d *Denoiser) transformerFLOPs(n, c, L int64, mp []hook.ModulePlan) int64 {
	cc := int64(d.m.ContextDim)
	f := 2 * 2 * n * c * c // proj_in, proj_out
	kept := func(j int) int64 {
		if j < len(mp) && mp[j].Action == hook.Prune && mp[j].Prune != nil {
			return n - int64(mp[j].Prune.K)
		}
		return n
	}
	for range d.m.TransformerDepth {
		var rule *hook.Pruning
		for j := range mp {
			if mp[j].Action == hook.Prune {
				rule = mp[j].Prune
			}
		}
		if rule != nil {
			switch rule.Rule {
			case hook.PruneDynamics:
				f += 2 * n * n * c
			case hook.PruneMerge:
				dst := n / int64(rule.SX*rule.SY)
				f += 2 * (n - dst) * dst * c
			}
		}
		a := kept(0) // self-attention: queries and keys are the kept tokens
		f += 2*4*a*c*c + 2*2*a*a*c
		q := kept(1) // cross-attention
		f += 2*2*q*c*c + 2*2*L*cc*c + 2*2*q*L*c
		h := kept(2) // GEGLU feed-forward
		f += 2*h*c*2*FFMult*c + 2*h*FFMult*c*c
	}
	return f
}
