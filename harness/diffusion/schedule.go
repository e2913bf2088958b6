// Package diffusion is the reference Gaussian diffusion of DiT/ADM (linear betas over 1000 steps,
// timestep respacing, DDPM ancestral and DDIM η=0 updates, classifier-free guidance) and the
// per-sample noise streams that make every sample depend on (seed, sample index) only.
//
// The schedule is built in float64 as the reference builds it with numpy; each coefficient is cast
// to float32 where it is used, and every tensor update runs in float32, as the reference does.
package diffusion

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Schedule is a (respaced) diffusion process.
type Schedule struct {
	// TimestepMap sends the respaced index i to the original timestep the model receives.
	TimestepMap []int64
	Betas       []float64

	AlphasCumprod, AlphasCumprodPrev                 []float64
	SqrtRecipAlphasCumprod, SqrtRecipm1AlphasCumprod []float64
	PosteriorVariance, PosteriorLogVarianceClipped   []float64
	PosteriorMeanCoef1, PosteriorMeanCoef2, LogBetas []float64
}

// Steps is the number of sampling steps.
func (s *Schedule) Steps() int { return len(s.Betas) }

// LinearBetas is the reference "linear" schedule: linspace(1e-4·k, 0.02·k, T) with k = 1000/T,
// computed as numpy's linspace does (start + i·step, last value set to stop).
func LinearBetas(T int) []float64 {
	scale := 1000 / float64(T)
	start, stop := scale*0.0001, scale*0.02
	b := make([]float64, T)
	if T == 1 {
		b[0] = start
		return b
	}
	step := (stop - start) / float64(T-1)
	for i := range b {
		b[i] = float64(float64(i)*step) + start // explicit conversion: no fused multiply-add
	}
	b[T-1] = stop
	return b
}

// SpaceTimesteps returns the original timesteps kept by a respacing spec: "K" or "K1,K2,..."
// (sections, as the reference's space_timesteps) or "ddimK" (stride T/K).
func SpaceTimesteps(T int, spec string) ([]int, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "ddim") {
		want, err := strconv.Atoi(spec[4:])
		if err != nil || want <= 0 {
			return nil, fmt.Errorf("respacing %q: want ddimK with K a positive integer", spec)
		}
		for i := 1; i < T; i++ {
			if (T+i-1)/i == want {
				var out []int
				for t := 0; t < T; t += i {
					out = append(out, t)
				}
				return out, nil
			}
		}
		return nil, fmt.Errorf("respacing %q: cannot create exactly %d steps with an integer stride over %d", spec, want, T)
	}
	var counts []int
	for _, part := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("respacing %q: %q is not a step count", spec, part)
		}
		counts = append(counts, n)
	}
	sizePer := T / len(counts)
	extra := T % len(counts)
	start := 0
	var all []int
	for i, count := range counts {
		size := sizePer
		if i < extra {
			size++
		}
		if size < count {
			return nil, fmt.Errorf("respacing %q: cannot divide a section of %d steps into %d", spec, size, count)
		}
		var stride float64
		if count <= 1 {
			stride = 1
		} else {
			stride = float64(size-1) / float64(count-1)
		}
		cur := 0.0
		for range count {
			all = append(all, start+int(math.RoundToEven(cur)))
			cur += stride
		}
		start += size
	}
	// The reference keeps a set: duplicates collapse and order is ascending.
	sort.Ints(all)
	uniq := all[:0]
	for i, v := range all {
		if i == 0 || v != all[i-1] {
			uniq = append(uniq, v)
		}
	}
	if len(uniq) == 0 {
		return nil, fmt.Errorf("respacing %q keeps no timesteps", spec)
	}
	return uniq, nil
}

// NewSchedule builds the respaced linear schedule over T original steps (T = 1000 in DiT).
func NewSchedule(T int, spec string) (*Schedule, error) {
	if T < 2 {
		return nil, fmt.Errorf("diffusion steps %d: need at least 2", T)
	}
	use, err := SpaceTimesteps(T, spec)
	if err != nil {
		return nil, err
	}
	base := LinearBetas(T)
	ac := cumprod(oneMinus(base))
	keep := make(map[int]bool, len(use))
	for _, u := range use {
		keep[u] = true
	}
	s := &Schedule{}
	last := 1.0
	for i, a := range ac {
		if keep[i] {
			s.Betas = append(s.Betas, 1-a/last)
			s.TimestepMap = append(s.TimestepMap, int64(i))
			last = a
		}
	}
	s.derive()
	return s, nil
}

// derive computes every coefficient from Betas, as the reference GaussianDiffusion constructor.
func (s *Schedule) derive() {
	n := len(s.Betas)
	alphas := make([]float64, n)
	for i, b := range s.Betas {
		alphas[i] = 1 - b
	}
	s.AlphasCumprod = cumprod(alphas)
	s.AlphasCumprodPrev = append([]float64{1}, s.AlphasCumprod[:n-1]...)
	mk := func() []float64 { return make([]float64, n) }
	s.SqrtRecipAlphasCumprod, s.SqrtRecipm1AlphasCumprod = mk(), mk()
	s.PosteriorVariance, s.PosteriorLogVarianceClipped = mk(), mk()
	s.PosteriorMeanCoef1, s.PosteriorMeanCoef2, s.LogBetas = mk(), mk(), mk()
	for i := range n {
		a, ap, b := s.AlphasCumprod[i], s.AlphasCumprodPrev[i], s.Betas[i]
		s.SqrtRecipAlphasCumprod[i] = math.Sqrt(1 / a)
		s.SqrtRecipm1AlphasCumprod[i] = math.Sqrt(1/a - 1)
		s.PosteriorVariance[i] = b * (1 - ap) / (1 - a)
		s.PosteriorMeanCoef1[i] = b * math.Sqrt(ap) / (1 - a)
		s.PosteriorMeanCoef2[i] = (1 - ap) * math.Sqrt(alphas[i]) / (1 - a)
		s.LogBetas[i] = math.Log(b)
	}
	for i := range n {
		if i == 0 && n > 1 {
			s.PosteriorLogVarianceClipped[i] = math.Log(s.PosteriorVariance[1])
		} else {
			s.PosteriorLogVarianceClipped[i] = math.Log(s.PosteriorVariance[i])
		}
	}
}

func oneMinus(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = 1 - v
	}
	return out
}

func cumprod(x []float64) []float64 {
	out := make([]float64, len(x))
	p := 1.0
	for i, v := range x {
		p *= v
		out[i] = p
	}
	return out
}
