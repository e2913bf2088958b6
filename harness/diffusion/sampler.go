package diffusion

import (
	"fmt"
	"math"
)

// Kind names a sampler.
type Kind string

const (
	// DDPM is ancestral sampling (p_sample).
	DDPM Kind = "ddpm"
	// DDIM is deterministic DDIM with η = 0 (ddim_sample).
	DDIM Kind = "ddim"
)

// ParseKind validates a sampler name.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case DDPM, DDIM, DPMSolverPP, PLMS:
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown sampler %q (want ddpm, ddim, dpmpp or plms)", s)
}

// NeedsNoise reports whether a step consumes a fresh Gaussian draw.
func (k Kind) NeedsNoise() bool { return k == DDPM }

// StepResult is what one update produces.
type StepResult struct {
	X          []float32 // next state
	PredXStart []float32 // predicted x₀ (not clipped)
}

// Step applies one update at respaced index i to x [B, C, …] given the model output mo
// [B, C or 2C, …] (ε, and the variance value v when learnSigma). noise is used by DDPM only
// (same shape as x; nil means zero noise).
func (s *Schedule) Step(kind Kind, i int, x, mo []float32, batch, channels int, learnSigma bool, noise []float32) (StepResult, error) {
	if i < 0 || i >= s.Steps() {
		return StepResult{}, fmt.Errorf("step index %d outside [0, %d)", i, s.Steps())
	}
	if batch <= 0 || channels <= 0 || len(x)%(batch*channels) != 0 {
		return StepResult{}, fmt.Errorf("state of %d values does not split into %d rows × %d channels", len(x), batch, channels)
	}
	hw := len(x) / (batch * channels)
	outC := channels
	if learnSigma {
		outC = 2 * channels
	}
	if len(mo) != batch*outC*hw {
		return StepResult{}, fmt.Errorf("model output has %d values, want %d (%d rows × %d channels × %d)", len(mo), batch*outC*hw, batch, outC, hw)
	}
	if noise != nil && len(noise) != len(x) {
		return StepResult{}, fmt.Errorf("noise has %d values, state has %d", len(noise), len(x))
	}
	// Every intermediate goes through an explicit float32 conversion: Go then rounds each product
	// (no fused multiply-add), matching the reference's float32 tensor arithmetic.
	sra, srm1 := float32(s.SqrtRecipAlphasCumprod[i]), float32(s.SqrtRecipm1AlphasCumprod[i])
	res := StepResult{X: make([]float32, len(x)), PredXStart: make([]float32, len(x))}
	for b := range batch {
		for c := range channels {
			for p := range hw {
				xi := (b*channels+c)*hw + p
				ei := (b*outC+c)*hw + p
				xv, eps := x[xi], mo[ei]
				px := float32(sra*xv) - float32(srm1*eps)
				res.PredXStart[xi] = px
				switch kind {
				case DDPM:
					c1, c2 := float32(s.PosteriorMeanCoef1[i]), float32(s.PosteriorMeanCoef2[i])
					mean := float32(c1*px) + float32(c2*xv)
					var logVar float32
					if learnSigma {
						minLog, maxLog := float32(s.PosteriorLogVarianceClipped[i]), float32(s.LogBetas[i])
						frac := float32(mo[(b*outC+channels+c)*hw+p]+1) / 2
						logVar = float32(frac*maxLog) + float32(float32(1-frac)*minLog)
					} else {
						logVar = float32(s.fixedLargeLogVariance(i))
					}
					next := mean
					if i != 0 && noise != nil {
						next = mean + float32(float32(math.Exp(float64(float32(0.5)*logVar)))*noise[xi])
					}
					res.X[xi] = next
				case DDIM:
					epsP := float32(float32(sra*xv)-px) / srm1
					abp := float32(s.AlphasCumprodPrev[i])
					res.X[xi] = float32(px*float32(math.Sqrt(float64(abp)))) + float32(float32(math.Sqrt(float64(float32(1-abp))))*epsP)
				default:
					return StepResult{}, fmt.Errorf("unknown sampler %q", kind)
				}
			}
		}
	}
	return res, nil
}

// fixedLargeLogVariance is the reference's FIXED_LARGE log-variance (models without learned sigma):
// log(posterior_variance[1]) at index 0, log(beta_i) otherwise.
func (s *Schedule) fixedLargeLogVariance(i int) float64 {
	if i == 0 && s.Steps() > 1 {
		return math.Log(s.PosteriorVariance[1])
	}
	return s.LogBetas[i]
}

// GuidanceAll applies guidance to all channels of ε (as diffusers does); -1 in GuideCFG.
const GuidanceAll = -1

// GuideCFG applies classifier-free guidance in place of forward_with_cfg: out is the model output
// [2h, outC, …] on the batch [cond rows | null rows]; the first guideChannels channels of each
// conditional/unconditional pair become uncond + scale·(cond − uncond) in both halves, the rest is
// left per row (the reference guides channels 0–2 only, or every channel of a model with fewer;
// GuidanceAll guides the C ε channels).
func GuideCFG(out []float32, batch, outC, epsC, guideChannels int, scale float32) error {
	if batch%2 != 0 {
		return fmt.Errorf("CFG needs an even batch (cond | null halves), got %d rows", batch)
	}
	if guideChannels == GuidanceAll {
		guideChannels = epsC
	}
	if guideChannels < 0 {
		return fmt.Errorf("CFG over %d channels: must be ≥ 0 or GuidanceAll", guideChannels)
	}
	// The reference slices out[:, :3]; with fewer channels the slice is the whole output.
	guideChannels = min(guideChannels, outC)
	hw := len(out) / (batch * outC)
	h := batch / 2
	for b := range h {
		for c := range guideChannels {
			for p := range hw {
				ci := (b*outC+c)*hw + p
				ui := ((b+h)*outC+c)*hw + p
				g := out[ui] + float32(scale*float32(out[ci]-out[ui]))
				out[ci], out[ui] = g, g
			}
		}
	}
	return nil
}
