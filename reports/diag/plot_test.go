package diag

import (
	"math"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

// A skipped module counts as a feature that did not move; calls without a previous output and
// modules that never moved are left out.
func TestDynamicsPerCall(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	one := 1
	stats := []store.StepStat{
		{Call: 1, Block: 0, Module: "attn", Action: "full", DynRelL1: f(0.4)},
		{Call: 1, Block: 1, Module: "attn", Action: "full", DynRelL1: f(0.2)},
		{Call: 2, Block: 0, Module: "attn", Action: "prune", DynRelL1: f(0.3)},
		{Call: 2, Block: 1, Module: "attn", Action: "skip"},
		{Call: 2, Block: 2, Module: "attn", Action: "skip"},               // never moved: left out
		{Call: 2, Block: 0, Module: "attn", Sample: &one, DynRelL1: f(9)}, // per-sample row: left out
		{Call: 0, Block: 0, Module: "attn", Action: "full"},               // no previous output
	}
	pts := dynamicsPerCall(stats)
	if len(pts) != 2 || pts[0].X != 1 || pts[0].Y != 0.30000000000000004 && pts[0].Y != 0.3 || pts[1].X != 2 || pts[1].Y != 0.15 {
		t.Errorf("curve %v, want (1, 0.3) (2, 0.15)", pts)
	}
}

// A pruned module counts as computed (it ran at the call; nothing came from the cache), a skipped
// or partial one as cached.
func TestSummarizeCountsPruneAsComputed(t *testing.T) {
	n := func(v int) *int { return &v }
	s, err := Summarize(store.Run{ID: 1, Method: "dato"}, []store.StepStat{
		{Call: 0, Block: 1, Module: "attn", Action: "full", FreshTokens: n(256)},
		{Call: 1, Block: 1, Module: "attn", Action: "prune", FreshTokens: n(154)},
		{Call: 2, Block: 1, Module: "attn", Action: "skip", FreshTokens: n(0)},
		{Call: 3, Block: 1, Module: "attn", Action: "partial", FreshTokens: n(10)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Rows[0]; r.Computed != 2 || r.CachedSteps != 2 {
		t.Errorf("computed %d, cached %d; want 2 and 2", r.Computed, r.CachedSteps)
	}
}

// A heatmap cell is the mean of its call's batch rows, not the last one written.
func TestHeatGridMeansBatchRows(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	stats := []store.StepStat{
		{Call: 0, Block: 0, Module: "mlp", ErrRelL2: v(0.1)},
		{Call: 0, Block: 0, Module: "mlp", ErrRelL2: v(0.3)},
		{Call: 1, Block: 1, Module: "mlp", ErrRelL2: v(0.5)},
		{Call: 1, Block: 0, Module: "attn", ErrRelL2: v(9)},
	}
	g, lo, hi, err := heatGrid(stats, "err", "mlp")
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(g.z[0][0]-0.2) > 1e-12 || g.z[1][1] != 0.5 || !math.IsNaN(g.z[1][0]) || !math.IsNaN(g.z[0][1]) {
		t.Errorf("grid %v", g.z)
	}
	if math.Abs(lo-0.2) > 1e-12 || hi != 0.5 {
		t.Errorf("range [%g, %g], want [0.2, 0.5]", lo, hi)
	}
}
