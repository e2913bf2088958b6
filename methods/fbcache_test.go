package methods

import (
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

var layout6 = hook.Layout{Depth: 6, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 16, GridH: 4, GridW: 4, Hidden: 8, Heads: 2}

func dbParams(kv ...string) map[string]string {
	p := map[string]string{"Fn": "1", "max_warmup_steps": "0", "thresh": "0.1"}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return p
}

// The gates' ranges: FBCache gates blocks 1..L−1, DBCache Fn..L−1−Bn, both with the residual
// statistic; the always-computed blocks are noted full.
func TestDBCacheSpans(t *testing.T) {
	env := Env{Layout: layout6, Steps: 4, Rows: 2}
	for _, c := range []struct {
		method string
		params map[string]string
		want   hook.Span
	}{
		{"fbcache", nil, hook.Span{From: 1, To: 5}},
		{"dbcache", map[string]string{"Fn": "2", "Bn": "1"}, hook.Span{From: 2, To: 4}},
		{"dbcache", map[string]string{"Fn": "1", "Bn": "4"}, hook.Span{From: 1, To: 1}},
	} {
		m := mustNew(t, c.method, c.params, env)
		p, _ := m.Plan(0, 3)
		if p.Gate.Span != c.want || p.Gate.Stat != hook.StatResidual || !p.Gate.PerBatch {
			t.Errorf("%s %v: gate %+v, want span %v, residual, per batch", c.method, c.params, p.Gate, c.want)
		}
	}
	m := mustNew(t, "dbcache", map[string]string{"Fn": "2", "Bn": "1", "max_warmup_steps": "0"}, env)
	playGate(t, m, env, func(call int) []float64 { return constant(call, inf, 0.01) })
	var types []string
	for _, n := range m.Notes() {
		types = append(types, n.Type)
	}
	if got := strings.Join(types, " "); got != "full full skip skip skip full" {
		t.Errorf("notes of a skipped call: %s", got)
	}
}

// FBCache (diffusers): skip when diff ≤ thresh, from the second call on; no warm-up, no limits.
func TestFBCacheRule(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 8, Rows: 2}
	m := mustNew(t, "fbcache", map[string]string{"thresh": "0.05"}, env)
	stats := []float64{inf, 0.05, 0.01, 0.06, 0.049, 0.2, 0, 0.01}
	d := playGate(t, m, env, func(call int) []float64 { return []float64{stats[call]} })
	if got, want := column(d, 0), "FSSFSFSS"; got != want {
		t.Errorf("decisions %s, want %s", got, want)
	}
	if _, _, err := New("fbcache", nil, Env{Layout: hook.Layout{Depth: 1, Modules: smallLayout.Modules}, Steps: 4, Rows: 2}); err == nil {
		t.Error("fbcache on one block: no error")
	}
}

// DBCache: warm-up calls run, diff < thresh skips (strictly), max_cached_steps caps the skips,
// cache-dit's special thresholds.
func TestDBCacheRule(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 10, Rows: 2}
	small := func(call int) []float64 { return constant(call, inf, 0.01) }
	for _, c := range []struct {
		params map[string]string
		stat   func(int) []float64
		want   string
	}{
		{dbParams("max_warmup_steps", "3"), small, "FFFSSSSSSS"},
		{dbParams("max_cached_steps", "2"), small, "FSSFFFFFFF"},
		{dbParams("max_warmup_steps", "2", "max_cached_steps", "3"), small, "FFSSSFFFFF"},
		{dbParams(), func(call int) []float64 { return constant(call, inf, 0.1) }, "FFFFFFFFFF"},            // strictly below
		{dbParams("thresh", "0"), small, "FFFFFFFFFF"},                                                      // ≤ 0: never
		{dbParams("thresh", "1"), func(call int) []float64 { return constant(call, inf, 5) }, "FSSSSSSSSS"}, // ≥ 1: always (after a reference exists)
	} {
		m := mustNew(t, "dbcache", c.params, env)
		if got := column(playGate(t, m, env, c.stat), 0); got != c.want {
			t.Errorf("%v: %s, want %s", c.params, got, c.want)
		}
	}
}

// max_continuous_cached_steps = 3 with the threshold making call 3 run. cache-dit's counter
// (faithful) is not reset there, so the run that starts at call 4 ends after two skips; after
// the limit fires (call 6) the counter restarts at 0, the next isolated skip does not count,
// and the pair after it counts 2. clean counts consecutive skipped calls.
func TestDBCacheContinuous(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 11, Rows: 2}
	stat := func(call int) []float64 {
		if call == 3 {
			return []float64{0.5}
		}
		return constant(call, inf, 0.01)
	}
	for mode, want := range map[string]string{"faithful": "FSSFSSFSSSF", "clean": "FSSFSSSFSSS"} {
		m := mustNew(t, "dbcache", dbParams("max_continuous_cached_steps", "3", "mode", mode), env)
		if got := column(playGate(t, m, env, stat), 0); got != want {
			t.Errorf("%s: %s, want %s", mode, got, want)
		}
	}
	m := mustNew(t, "dbcache", dbParams("max_continuous_cached_steps", "0"), env)
	if got := column(playGate(t, m, env, stat), 0); got != "FFFFFFFFFFF" {
		t.Errorf("limit 0: %s, want no skip", got)
	}
}

// Per sample, each row has its own counters: row 0 (small diffs) uses its two allowed skips,
// row 1 (large diffs) none, and row 1's runs do not spend row 0's allowance.
func TestDBCachePerSample(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 6, Rows: 2}
	m := mustNew(t, "dbcache", dbParams("max_cached_steps", "2", "decide", "per-sample"), env)
	d := playGate(t, m, env, func(call int) []float64 {
		if call == 0 {
			return []float64{inf, inf}
		}
		return []float64{0.01, 0.5}
	})
	if a, b := column(d, 0), column(d, 1); a != "FSSFFF" || b != "FFFFFF" {
		t.Errorf("rows %s, %s; want FSSFFF, FFFFFF", a, b)
	}
}

func TestDBCacheParams(t *testing.T) {
	env := Env{Layout: layout6, Steps: 4, Rows: 2}
	for _, bad := range []map[string]string{
		{"Fn": "0"}, {"Fn": "6"}, {"Fn": "3", "Bn": "3"}, {"Bn": "-1"}, {"max_cached_steps": "-2"}, {"thresh": "-0.1"}, {"mode": "exact"},
	} {
		if _, _, err := New("dbcache", bad, env); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	// cache-dit's default F8 does not fit a 6-block model; the message says why.
	if _, _, err := New("dbcache", nil, env); err == nil || !strings.Contains(err.Error(), "Fn=8") {
		t.Errorf("default Fn on depth 6: %v", err)
	}
	if _, _, err := New("dbcache", map[string]string{"Fn": "5"}, env); err != nil {
		t.Errorf("Fn=5 on depth 6: %v", err)
	}
}
