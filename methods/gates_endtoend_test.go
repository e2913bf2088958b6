package methods_test

import (
	"math"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/models/dit"
)

// The gate methods on the executor (tiny DiT of the golden caching setup, DDIM 50, CFG 1.5, 4
// rows): every call carries its gate, the executor measures the statistic (+Inf at call 0, then
// finite), the method's decisions follow its rule on those statistics, skipped rows are billed
// nothing in their gated blocks, and the run stays close to the uncached one.
func TestGatesTiny(t *testing.T) {
	for _, c := range []struct {
		method string
		params map[string]string
		// rule replays the method's decision from the statistics (one per unit) of every call so far.
		rule func(stats [][]float64, call, u int) bool
	}{
		{"teacache", map[string]string{"thresh": "0.1", "decide": "per-sample"}, teaRule(0.1)},
		{"fbcache", map[string]string{"thresh": "0.4"}, func(stats [][]float64, call, u int) bool { return stats[call][u] <= 0.4 }},
		{"dbcache", map[string]string{"Fn": "1", "Bn": "1", "thresh": "0.4", "max_warmup_steps": "4", "max_continuous_cached_steps": "2", "mode": "clean", "decide": "per-sample"}, dbCleanRule(0.4, 4, 2)},
	} {
		t.Run(c.method, func(t *testing.T) {
			var stats [][]float64
			var skipped [][]bool
			billed := true
			pol, worst := runTiny(t, c.method, c.params, nil, func(tc tinyCall, m *dit.Model, _ []float32) {
				g := tc.plan.Gate
				if g == nil || g.Stats == nil || len(g.Skipped) != 4 {
					t.Fatalf("call %d: gate %+v not carried out", tc.call, g)
				}
				stats = append(stats, g.Stats)
				skipped = append(skipped, g.Skipped)
				full := m.BlockFLOPs(tc.plan, 4)
				ex := hook.ExecutedFLOPs(m, tc.plan, 4)
				ran := int64(g.Ran(4))
				if ex[g.Span.To] != full[g.Span.To]*ran/4 {
					billed = false
				}
			})
			if !billed {
				t.Error("a gated block billed for rows that skipped it")
			}
			if !math.IsInf(stats[0][0], 1) || slices.Contains(skipped[0], true) {
				t.Errorf("call 0: statistic %v, skipped %v", stats[0], skipped[0])
			}
			skips := 0
			for call := 1; call < len(stats); call++ {
				for u, s := range stats[call] {
					if math.IsNaN(s) || math.IsInf(s, 0) {
						t.Errorf("call %d: statistic %v", call, stats[call])
					}
					if c.rule(stats, call, u) != skipped[call][u] {
						t.Errorf("call %d row %d: skipped %v, the rule says otherwise (statistics %v)", call, u, skipped[call][u], stats[call])
					}
				}
				for _, s := range skipped[call] {
					if s {
						skips++
					}
				}
			}
			if c.method == "teacache" && slices.Contains(skipped[49], true) {
				t.Errorf("the last call skipped: %v", skipped[49])
			}
			if c.method == "dbcache" {
				for call := range 4 {
					if slices.Contains(skipped[call], true) {
						t.Errorf("warm-up call %d skipped: %v", call, skipped[call])
					}
				}
			}
			t.Logf("%s: %d of %d row-calls skipped, worst %.3g, last notes %q", c.method, skips, 4*49, worst, pol.Notes()[1].Type)
			if skips == 0 || skips == 4*49 {
				t.Errorf("%d row-calls skipped: the test's threshold no longer exercises the gate", skips)
			}
			if worst > 0.2 {
				t.Errorf("worst x_k distance %.3g", worst)
			}
		})
	}
}

// teaRule replays TeaCache's identity-rescaled accumulator per row from the statistics.
func teaRule(thresh float64) func(stats [][]float64, call, u int) bool {
	return func(stats [][]float64, call, u int) bool {
		if call == 0 || call == 49 {
			return false
		}
		acc := 0.0
		for k := 1; k <= call; k++ {
			acc += stats[k][u]
			skip := acc < thresh && k != 49
			if k == call {
				return skip
			}
			if !skip {
				acc = 0
			}
		}
		return false
	}
}

// dbCleanRule replays DBCache's clean rule per row: no skip during warm-up, then skip while
// the statistic is below thresh and fewer than maxRun calls in a row have skipped.
func dbCleanRule(thresh float64, warmup, maxRun int) func(stats [][]float64, call, u int) bool {
	return func(stats [][]float64, call, u int) bool {
		run := 0
		for k := 0; k <= call; k++ {
			skip := k >= warmup && run < maxRun && stats[k][u] < thresh
			if k == call {
				return skip
			}
			if skip {
				run++
			} else {
				run = 0
			}
		}
		return false
	}
}
