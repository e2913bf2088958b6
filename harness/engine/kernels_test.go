package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends/simplego"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The pure-Go backend's float32 DotGeneral (third_party/gomlx, SIMD where built with
// GOEXPERIMENT=simd) against a float64 product, over the layouts the models use: plain
// matrices, transposed operands, batch axes first or in the middle, several cross axes, and
// row/column counts on and off the kernel's 4×16 blocks.
func TestDotGeneralFloat32(t *testing.T) {
	t.Logf("SIMD kernels: %q", simplego.Float32Kernels())
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randT := func(dims ...int) ([]float32, *tensors.Tensor) {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v, tensors.FromFlatDataAndDimensions(v, dims...)
	}
	for _, c := range []struct{ M, K, N int }{{1, 1, 1}, {3, 5, 7}, {4, 48, 16}, {5, 48, 17}, {9, 16, 8}, {250, 48, 144}, {64, 16, 64}, {37, 29, 45}, {2, 192, 48}} {
		// lhs [K, B, M] contracting axis 0, batch 1; rhs [B, N, K] (transposed).
		const B = 3
		t.Run(fmt.Sprintf("M%d_K%d_N%d", c.M, c.K, c.N), func(t *testing.T) {
			av, at := randT(c.K, B, c.M)
			bv, bt := randT(B, c.N, c.K)
			out := MustExecOnce(be, func(a, b *Node) *Node {
				return DotGeneral(a, []int{0}, []int{1}, b, []int{2}, []int{0})
			}, at, bt)
			got := out.Value().([][][]float32)
			for bi := range B {
				for i := range c.M {
					for j := range c.N {
						var want, mag float64
						for k := range c.K {
							p := float64(av[(k*B+bi)*c.M+i]) * float64(bv[(bi*c.N+j)*c.K+k])
							want += p
							mag += math.Abs(p)
						}
						if d := math.Abs(float64(got[bi][i][j]) - want); d > 2*float64(c.K)*0x1p-24*mag+1e-30 {
							t.Fatalf("[%d,%d,%d] = %g, want %g (|diff| %g)", bi, i, j, got[bi][i][j], want, d)
						}
					}
				}
			}
		})
	}
}

// A row's product does not depend on how many rows share the call (the determinism promise:
// outputs are the same whatever the batch size).
func TestDotGeneralFloat32BatchInvariant(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	const K, N = 48, 144
	rows := 253
	a := make([]float32, rows*K)
	w := make([]float32, K*N)
	for i := range a {
		a[i] = float32(math.Sin(float64(i)*0.37)) * 3
	}
	for i := range w {
		w[i] = float32(math.Cos(float64(i) * 0.11))
	}
	mul := func(m int) [][]float32 {
		out := MustExecOnce(be, func(x, y *Node) *Node { return Dot(x, y) },
			tensors.FromFlatDataAndDimensions(a[:m*K], m, K), tensors.FromFlatDataAndDimensions(w, K, N))
		return out.Value().([][]float32)
	}
	all := mul(rows)
	for _, m := range []int{1, 3, 4, 7, 50} {
		part := mul(m)
		for i := range m {
			for j := range N {
				if math.Float32bits(part[i][j]) != math.Float32bits(all[i][j]) {
					t.Fatalf("rows=%d: [%d,%d] = %x, with %d rows %x", m, i, j, math.Float32bits(part[i][j]), rows, math.Float32bits(all[i][j]))
				}
			}
		}
	}
}

// Float32 Exp and Tanh (SIMD where built) against float64 math, within 2 ulp of float32, with
// their edge values; the tail of a vector goes through the same arithmetic as its body.
func TestExpTanhFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	var xs []float32
	for x := -110.0; x <= 90; x += 0.0137 {
		xs = append(xs, float32(x))
	}
	for x := -1.0; x <= 1; x += 1e-4 {
		xs = append(xs, float32(x))
	}
	inf := float32(math.Inf(1))
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 0.625, -0.625, 88.72, 88.73, -87.4, -103.9, -104, inf, -inf, float32(math.NaN()))
	in := tensors.FromFlatDataAndDimensions(xs, len(xs))
	outs := MustExecOnceN(be, func(x *Node) []*Node { return []*Node{Exp(x), Tanh(x)} }, in)
	exp, tanh := outs[0].Value().([]float32), outs[1].Value().([]float32)
	ulp := func(v float64) float64 {
		f := float32(math.Abs(v))
		if f < 0x1p-126 {
			return 0x1p-149
		}
		return float64(math.Nextafter32(f, inf) - f)
	}
	check := func(name string, f func(float64) float64, got []float32) {
		for i, x := range xs {
			want := f(float64(x))
			g := float64(got[i])
			switch {
			case math.IsNaN(want):
				if !math.IsNaN(g) {
					t.Errorf("%s(%g) = %g, want NaN", name, x, g)
				}
			case math.IsInf(want, 0) || want == 0:
				if g != want {
					t.Errorf("%s(%g) = %g, want %g", name, x, g, want)
				}
			case math.Abs(g-want) > 2*ulp(want) && !(name == "exp" && want < 0x1p-126 && math.Abs(g-want) <= 0x1p-149):
				t.Errorf("%s(%g) = %g, want %g (%.2f ulp)", name, x, g, want, math.Abs(g-want)/ulp(want))
			}
		}
	}
	check("exp", math.Exp, exp)
	check("tanh", math.Tanh, tanh)
	// Position invariance: the same values shifted by one element (another tail length).
	shifted := MustExecOnce(be, Exp, tensors.FromFlatDataAndDimensions(xs[1:], len(xs)-1)).Value().([]float32)
	for i := range shifted {
		if math.Float32bits(shifted[i]) != math.Float32bits(exp[i+1]) && !math.IsNaN(float64(shifted[i])) {
			t.Fatalf("exp(%g) depends on its position: %g and %g", xs[i+1], shifted[i], exp[i+1])
		}
	}
}
