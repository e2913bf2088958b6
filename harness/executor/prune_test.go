package executor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/x448/float16"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/gx"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// ldmToOurs reorders the golden's CFG rows [uncond…, cond…] (ldm) into the harness's
// [cond…, null…].
func ldmToOurs(rows int) []int {
	out := make([]int, rows)
	for r := range out {
		out[r] = (r + rows/2) % rows
	}
	return out
}

// Every prune event of the DaTo golden trace (testdata/dato, the official patch on the tiny SD
// UNet): from the recorded block input, noise, sign draw and dynamics, the rule keeps the same
// base tokens, drops the same tokens and restores each from the same kept token.
func TestPruneDynamicsGolden(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.Load("../../testdata/dato/trace.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../testdata/dato/actions.json")
	if err != nil {
		t.Fatal(err)
	}
	var trace struct {
		Prune []struct {
			NumPrune    int     `json:"num_prune"`
			Gamma       float64 `json:"gamma_used"`
			HasDynamics bool    `json:"has_dynamics"`
		} `json:"prune"`
	}
	if err := json.Unmarshal(raw, &trace); err != nil {
		t.Fatal(err)
	}
	if len(trace.Prune) != 14 {
		t.Fatalf("golden has %d prune events, want 14", len(trace.Prune))
	}
	get := func(name string, rows int) [][]float32 {
		t.Helper()
		tt, err := f.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return oursRows(v, rows)
	}
	getIdx := func(name string, rows int) [][]int64 {
		t.Helper()
		tt, err := f.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tt.Int64()
		if err != nil {
			t.Fatal(err)
		}
		return oursRows(v, rows)
	}
	const B, N, C = 4, 256, 32
	shape := hook.BlockShape{Tokens: N, GridH: 16, GridW: 16}
	for j, ev := range trace.Prune {
		t.Run(fmt.Sprint("event", j), func(t *testing.T) {
			p := &hook.Pruning{Rule: hook.PruneDynamics, K: ev.NumPrune, SX: 2, SY: 2, Gamma: float32(ev.Gamma),
				NoiseAlpha: 0.1, Noise: get(fmt.Sprintf("prune_%d_noise", j), B), Pairs: true}
			var dyn *tensors.Tensor
			if ev.HasDynamics {
				var flat []float32
				for _, r := range get(fmt.Sprintf("prune_%d_dynamics", j), B) {
					flat = append(flat, r...)
				}
				dyn = tensors.FromFlatDataAndDimensions(flat, B, N)
			}
			spec, args, err := PruneArgs(p, shape, dyn)
			if err != nil {
				t.Fatal(err)
			}
			var metric []float32
			for _, r := range get(fmt.Sprintf("prune_%d_metric", j), B) {
				metric = append(metric, r...)
			}
			base, dropped, source, err := PruneChoice(b, spec, tensors.FromFlatDataAndDimensions(metric, B, N, C), args)
			if err != nil {
				t.Fatal(err)
			}
			wantBase := getIdx(fmt.Sprintf("prune_%d_b_idx", j), B)
			unm := getIdx(fmt.Sprintf("prune_%d_a_unm_idx", j), B)
			src := getIdx(fmt.Sprintf("prune_%d_a_src_idx", j), B)
			maxIdx := getIdx(fmt.Sprintf("prune_%d_max_indices", j), B)
			for r := range B {
				if !slices.Equal(base[r], sortedI32(wantBase[r])) {
					t.Fatalf("row %d: base tokens %v, want %v", r, base[r], sortedI32(wantBase[r]))
				}
				if !slices.Equal(dropped[r], sortedI32(src[r])) {
					t.Fatalf("row %d: dropped %v, want %v", r, dropped[r], sortedI32(src[r]))
				}
				kept := append(slices.Clone(unm[r]), wantBase[r]...)
				for i, tok := range src[r] {
					if want := int32(kept[maxIdx[r][i]]); source[r][tok] != want {
						t.Errorf("row %d: dropped token %d takes token %d's output, want %d's", r, tok, source[r][tok], want)
					}
				}
			}
		})
	}
}

// oursRows splits a flat golden tensor into its rows, in the harness's order.
func oursRows[T any](v []T, rows int) [][]T {
	n := len(v) / rows
	out := make([][]T, rows)
	for r, src := range ldmToOurs(rows) {
		out[r] = v[src*n : (src+1)*n]
	}
	return out
}

func sortedI32(v []int64) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	slices.Sort(out)
	return out
}

// ToMeSD's merge on a grid small enough to check by hand: two identical tokens merge, the
// destination averages itself with its source, and the source gets the destination's output.
func TestPruneMergeByHand(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	// 2×2 grid, one cell, destination at position 0; token 3 equals token 0 up to scale, tokens 1
	// and 2 point elsewhere.
	x := []float32{1, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0.01}
	spec, args, err := PruneArgs(&hook.Pruning{Rule: hook.PruneMerge, K: 1, SX: 2, SY: 2, Cells: []int32{0}},
		hook.BlockShape{Tokens: 4, GridH: 2, GridW: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, dropped, source, err := PruneChoice(b, spec, tensors.FromFlatDataAndDimensions(x, 1, 4, 3), args)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(base[0], []int32{0}) || !slices.Equal(dropped[0], []int32{3}) || !slices.Equal(source[0], []int32{0, 1, 2, 0}) {
		t.Fatalf("base %v dropped %v source %v, want [0] [3] [0 1 2 0]", base, dropped, source)
	}
}

// The float16 rounding agrees with a reference conversion on ties, spacings across powers of two,
// subnormals and overflow.
func TestRoundFloat16(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	vals := []float32{0, 1, 1.00048828125, 1.000732421875, 2047.5, 2048.9, 3.14159, 65504, 65519, 65520, 1e6,
		float32(math.Ldexp(1, -24)), float32(math.Ldexp(3, -26)), 1e-7, 6.1e-5, 0.999755859375, 5.65685}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		vals = append(vals, float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(40)-20)))
	}
	got := make([]float32, len(vals))
	err = gx.Catch(func() {
		out := MustExecOnce(b, roundFloat16, tensors.FromFlatDataAndDimensions(vals, len(vals)))
		copy(got, tensors.MustCopyFlatData[float32](out))
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if want := float16.Fromfloat32(v).Float32(); got[i] != want {
			t.Errorf("%g: rounded to %g, float16 is %g", v, got[i], want)
		}
	}
}

// exclusivePrefixSum gives, per row, the sum of the elements before each one, for lengths on and
// off powers of two.
func TestExclusivePrefixSum(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 5, 8, 13, 256} {
		x := make([]int32, 3*n)
		for i := range x {
			x[i] = int32((i*37)%5) - 1
		}
		got := MustExecOnce(b, exclusivePrefixSum, tensors.FromFlatDataAndDimensions(x, 3, n)).Value().([][]int32)
		for r := range 3 {
			var s int32
			for i := range n {
				if got[r][i] != s {
					t.Fatalf("n=%d row %d [%d] = %d, want %d", n, r, i, got[r][i], s)
				}
				s += x[r*n+i]
			}
		}
	}
}
