package diffusion

// torchLinspace is torch.linspace as its CPU kernel computes it, in the precision of F: values
// before n/2 count up from start, the rest down from end, each base one fused multiply-add (the
// kernel is built with FMA contraction); the kernel fills runs of two vectors of lanes values
// (AVX2: 8 float32 or 4 float64) from each vector's base plus j·step rounded twice, and the tail
// one value at a time. The reference schedules (PixArt's DPM-Solver times, LDM's betas) come
// from it, so matching them bit for bit needs its order of operations, not the textbook formula.
func torchLinspace[F float32 | float64](start, end F, n, lanes int, fma func(a, b, c F) F) []F {
	out := make([]F, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / F(n-1)
	half := n / 2
	at := func(i int) F {
		if i < half {
			return fma(step, F(i), start)
		}
		return fma(-step, F(n-1-i), end)
	}
	i := 0
	for ; i+2*lanes <= n; i += 2 * lanes {
		for v := i; v < i+2*lanes; v += lanes {
			base := at(v)
			for j := range lanes {
				// The conversion rounds the product before the sum (no fused multiply-add).
				out[v+j] = base + F(step*F(j))
			}
		}
	}
	for ; i < n; i++ {
		out[i] = at(i)
	}
	return out
}
