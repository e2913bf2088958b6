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

// ReduceSum/ReduceMax over the last axis (a fast path in third_party/gomlx) give the same bits as
// over a first axis (upstream's general iterator): both add left to right from zero.
func TestReduceLastAxisFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	const rows, n = 37, 193
	x := make([]float32, rows*n)
	xt := make([]float32, rows*n)
	for r := range rows {
		for i := range n {
			v := float32(math.Sin(float64(r*n+i)*1.7)) * float32(math.Exp(float64(i%23)))
			if r == 5 && i == 7 {
				v = float32(math.NaN())
			}
			if r == 6 {
				v = float32(math.Inf(-1))
			}
			x[r*n+i], xt[i*rows+r] = v, v
		}
	}
	outs := MustExecOnceN(be, func(a, b *Node) []*Node {
		return []*Node{ReduceSum(a, -1), ReduceSum(b, 0), ReduceMax(a, -1), ReduceMax(b, 0)}
	}, tensors.FromFlatDataAndDimensions(x, rows, n), tensors.FromFlatDataAndDimensions(xt, n, rows))
	for k, name := range []string{"sum", "max"} {
		fast, gen := outs[2*k].Value().([]float32), outs[2*k+1].Value().([]float32)
		for r := range rows {
			if math.Float32bits(fast[r]) != math.Float32bits(gen[r]) && !(math.IsNaN(float64(fast[r])) && math.IsNaN(float64(gen[r]))) {
				t.Errorf("%s of row %d: last axis %g, first axis %g", name, r, fast[r], gen[r])
			}
		}
	}
}

// Float32 broadcasts (block copies in third_party/gomlx) against indexing by hand: leading,
// middle, trailing and several broadcast axes.
func TestBroadcastFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, out []int }{
		{[]int{1, 5}, []int{7, 5}},
		{[]int{3, 1}, []int{3, 6}},
		{[]int{2, 1, 4}, []int{2, 9, 4}},
		{[]int{1, 3, 1}, []int{5, 3, 7}},
		{[]int{1, 1, 1}, []int{2, 3, 4}},
		{[]int{4, 1, 1, 3}, []int{4, 2, 5, 3}},
	} {
		n := 1
		for _, d := range c.src {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i) + 0.5
		}
		got := MustExecOnce(be, func(x *Node) *Node { return BroadcastToDims(x, c.out...) },
			tensors.FromFlatDataAndDimensions(v, c.src...))
		flat := got.Value()
		var gotFlat []float32
		switch g := flat.(type) {
		case [][]float32:
			for _, r := range g {
				gotFlat = append(gotFlat, r...)
			}
		case [][][]float32:
			for _, p := range g {
				for _, r := range p {
					gotFlat = append(gotFlat, r...)
				}
			}
		case [][][][]float32:
			for _, q := range g {
				for _, p := range q {
					for _, r := range p {
						gotFlat = append(gotFlat, r...)
					}
				}
			}
		}
		total := 1
		for _, d := range c.out {
			total *= d
		}
		if len(gotFlat) != total {
			t.Fatalf("%v→%v: %d values, want %d", c.src, c.out, len(gotFlat), total)
		}
		for o := range total {
			rem, si, stride := o, 0, 1
			idx := make([]int, len(c.out))
			for a := len(c.out) - 1; a >= 0; a-- {
				idx[a] = rem % c.out[a]
				rem /= c.out[a]
			}
			for a := len(c.out) - 1; a >= 0; a-- {
				if c.src[a] != 1 {
					si += idx[a] * stride
				}
				stride *= c.src[a]
			}
			if gotFlat[o] != v[si] {
				t.Fatalf("%v→%v: out[%v] = %g, want %g", c.src, c.out, idx, gotFlat[o], v[si])
			}
		}
	}
}

// Float32 transposes (an odometer copy in third_party/gomlx) against indexing by hand.
func TestTransposeFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	dims := []int{3, 1, 4, 5}
	v := make([]float32, 60)
	for i := range v {
		v[i] = float32(i)
	}
	for _, perm := range [][]int{{0, 2, 1, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {0, 1, 2, 3}} {
		got := MustExecOnce(be, func(x *Node) *Node { return TransposeAllAxes(x, perm...) },
			tensors.FromFlatDataAndDimensions(v, dims...))
		var flat []float32
		tensors.ConstFlatData(got, func(f []float32) { flat = append(flat, f...) })
		od := make([]int, 4)
		for i, a := range perm {
			od[i] = dims[a]
		}
		for o := range flat {
			rem := o
			oi := make([]int, 4)
			for a := 3; a >= 0; a-- {
				oi[a] = rem % od[a]
				rem /= od[a]
			}
			si := make([]int, 4)
			for i, a := range perm {
				si[a] = oi[i]
			}
			want := float32(((si[0]*dims[1]+si[1])*dims[2]+si[2])*dims[3] + si[3])
			if flat[o] != want {
				t.Fatalf("perm %v: out%v = %g, want %g", perm, oi, flat[o], want)
			}
		}
	}
}

// Integer reductions over the last axis and a middle axis (fast path) against the values summed,
// maxed and mined by hand.
func TestReduceInt32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	const a, m, b = 3, 11, 5
	x := make([]int32, a*m*b)
	for i := range x {
		x[i] = int32((i*7919)%97) - 48
	}
	outs := MustExecOnceN(be, func(p *Node) []*Node {
		return []*Node{ReduceSum(p, 1), ReduceMax(p, 1), ReduceMin(p, 1), ReduceSum(p, 2), ReduceMax(p, 2), ReduceMin(p, 2)}
	}, tensors.FromFlatDataAndDimensions(x, a, m, b))
	var got [6][]int32
	for k := range outs {
		tensors.ConstFlatData(outs[k], func(f []int32) { got[k] = append(got[k], f...) })
	}
	for i := range a {
		for k := range b {
			s, hi, lo := int32(0), int32(math.MinInt32), int32(math.MaxInt32)
			for j := range m {
				v := x[(i*m+j)*b+k]
				s, hi, lo = s+v, max(hi, v), min(lo, v)
			}
			if got[0][i*b+k] != s || got[1][i*b+k] != hi || got[2][i*b+k] != lo {
				t.Fatalf("axis 1 at [%d,%d]: %d %d %d, want %d %d %d", i, k, got[0][i*b+k], got[1][i*b+k], got[2][i*b+k], s, hi, lo)
			}
		}
		for j := range m {
			s, hi, lo := int32(0), int32(math.MinInt32), int32(math.MaxInt32)
			for k := range b {
				v := x[(i*m+j)*b+k]
				s, hi, lo = s+v, max(hi, v), min(lo, v)
			}
			if got[3][i*m+j] != s || got[4][i*m+j] != hi || got[5][i*m+j] != lo {
				t.Fatalf("axis 2 at [%d,%d]: %d %d %d, want %d %d %d", i, j, got[3][i*m+j], got[4][i*m+j], got[5][i*m+j], s, hi, lo)
			}
		}
	}
}

// Reductions over a middle run of axes (fast path) against the same values laid out so that the
// reduced axes are not consecutive (upstream's iterator): same bits.
func TestReduceMiddleAxesFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	const a, m, b = 5, 33, 7
	x := make([]float32, a*m*b)  // [a, m, b]
	xt := make([]float32, a*m*b) // [m, a, 1, b]
	for i := range a {
		for j := range m {
			for k := range b {
				v := float32(math.Sin(float64(i*m*b+j*b+k)*0.91)) * float32(1+j%5)
				x[(i*m+j)*b+k], xt[(j*a+i)*b+k] = v, v
			}
		}
	}
	outs := MustExecOnceN(be, func(p, q *Node) []*Node {
		return []*Node{ReduceSum(p, 1), ReduceSum(q, 0, 2), ReduceMax(p, 1), ReduceMax(q, 0, 2), ReduceMin(p, 1), ReduceMin(q, 0, 2)}
	}, tensors.FromFlatDataAndDimensions(x, a, m, b), tensors.FromFlatDataAndDimensions(xt, m, a, 1, b))
	for k, name := range []string{"sum", "max", "min"} {
		var fast, gen []float32
		tensors.ConstFlatData(outs[2*k], func(f []float32) { fast = append(fast, f...) })
		tensors.ConstFlatData(outs[2*k+1], func(f []float32) { gen = append(gen, f...) })
		for i := range fast {
			if math.Float32bits(fast[i]) != math.Float32bits(gen[i]) {
				t.Fatalf("%s [%d]: middle axis %g, scattered axes %g", name, i, fast[i], gen[i])
			}
		}
	}
}

// Float32 Add, Sub, Mul, Div (8 lanes where built) give exactly Go's float32 arithmetic, for equal
// shapes and a scalar right-hand side, with tails of every length.
func TestBinaryFloat32(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 7, 8, 9, 203} {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(math.Sin(float64(i)*1.3))*7, float32(math.Cos(float64(i)*0.7))+1.5
		}
		c := float32(0.37)
		outs := MustExecOnceN(be, func(x, y, s *Node) []*Node {
			return []*Node{Add(x, y), Sub(x, y), Mul(x, y), Div(x, y), Add(x, s), Sub(x, s), Mul(x, s), Div(x, s)}
		}, tensors.FromFlatDataAndDimensions(a, n), tensors.FromFlatDataAndDimensions(b, n), tensors.FromScalar(c))
		ops := []func(x, y float32) float32{
			func(x, y float32) float32 { return x + y }, func(x, y float32) float32 { return x - y },
			func(x, y float32) float32 { return x * y }, func(x, y float32) float32 { return x / y }}
		for k, o := range outs {
			got := o.Value().([]float32)
			for i := range n {
				y := b[i]
				if k >= 4 {
					y = c
				}
				if want := ops[k%4](a[i], y); math.Float32bits(got[i]) != math.Float32bits(want) {
					t.Fatalf("n=%d op %d [%d]: %g, want %g", n, k, i, got[i], want)
				}
			}
		}
	}
}

// Gather copies contiguous runs (third_party/gomlx) and still picks the right slices: whole rows,
// partial rows and nested batch axes, against indexing by hand.
func TestGatherRuns(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	const A, B, C = 6, 5, 3
	p := make([]float32, A*B*C)
	for i := range p {
		p[i] = float32(i)
	}
	rows := [][]int32{{4}, {0}, {5}, {2}}
	cells := [][]int32{{1, 4}, {5, 0}, {3, 3}, {0, 2}}
	outs := MustExecOnceN(be, func(x, r, c *Node) []*Node { return []*Node{Gather(x, r), Gather(x, c)} },
		tensors.FromFlatDataAndDimensions(p, A, B, C), tensors.FromValue(rows), tensors.FromValue(cells))
	gotRows := outs[0].Value().([][][]float32)
	for i, r := range rows {
		for b := range B {
			for c := range C {
				if want := p[(int(r[0])*B+b)*C+c]; gotRows[i][b][c] != want {
					t.Fatalf("rows: [%d,%d,%d] = %g, want %g", i, b, c, gotRows[i][b][c], want)
				}
			}
		}
	}
	gotCells := outs[1].Value().([][]float32)
	for i, r := range cells {
		for c := range C {
			if want := p[(int(r[0])*B+int(r[1]))*C+c]; gotCells[i][c] != want {
				t.Fatalf("cells: [%d,%d] = %g, want %g", i, c, gotCells[i][c], want)
			}
		}
	}
}

// Integer and boolean broadcasts and transposes take the same block-copy paths as float32.
func TestBroadcastTransposeInt32Bool(t *testing.T) {
	be, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	iv := []int32{1, 2, 3}
	bv := []bool{true, false, true}
	outs := MustExecOnceN(be, func(i, b *Node) []*Node {
		return []*Node{BroadcastToDims(i, 2, 3), BroadcastToDims(b, 2, 3), TransposeAllAxes(BroadcastToDims(i, 2, 3), 1, 0)}
	}, tensors.FromFlatDataAndDimensions(iv, 1, 3), tensors.FromFlatDataAndDimensions(bv, 1, 3))
	if got := outs[0].Value().([][]int32); fmt.Sprint(got) != "[[1 2 3] [1 2 3]]" {
		t.Errorf("int32 broadcast %v", got)
	}
	if got := outs[1].Value().([][]bool); fmt.Sprint(got) != "[[true false true] [true false true]]" {
		t.Errorf("bool broadcast %v", got)
	}
	if got := outs[2].Value().([][]int32); fmt.Sprint(got) != "[[1 1] [2 2] [3 3]]" {
		t.Errorf("int32 transpose %v", got)
	}
}
