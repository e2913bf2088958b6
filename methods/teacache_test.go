package methods

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

var inf = math.Inf(1)

// playGate plans every call of a gate method and plays the executor without a network: stat
// gives the statistic handed to Decide (one per unit), the decision is broadcast to the rows as
// the executor does, and Observe sees the outcome. It returns each call's decisions.
func playGate(t *testing.T, m Method, env Env, stat func(call int) []float64) [][]bool {
	t.Helper()
	var out [][]bool
	for call := range env.Steps {
		step := env.Steps - 1 - call
		p, err := m.Plan(call, step)
		if err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		if p.Gate == nil {
			t.Fatalf("call %d: no gate (every call must carry it, so the executor keeps its references)", call)
		}
		if err := p.Validate(env.Layout, hook.NewCache(env.Layout), env.Rows); err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		s := stat(call)
		d, err := p.Gate.Decide(s)
		if err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		if call == 0 && slices.Contains(d, true) {
			t.Fatalf("call 0 skips: nothing is stored yet")
		}
		p.Gate.Stats = s
		p.Gate.Skipped = make([]bool, env.Rows)
		for r := range env.Rows {
			p.Gate.Skipped[r] = d[min(r, len(d)-1)]
		}
		if err := m.Observe(call, step, p, nil); err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		out = append(out, d)
	}
	return out
}

// column returns unit u's decisions over calls as a string of F (ran) and S (skipped).
func column(d [][]bool, u int) string {
	var b strings.Builder
	for _, c := range d {
		if c[u] {
			b.WriteByte('S')
		} else {
			b.WriteByte('F')
		}
	}
	return b.String()
}

func mustNew(t *testing.T, name string, params map[string]string, env Env) Method {
	t.Helper()
	m, _, err := New(name, params, env)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func constant(call int, first float64, rest ...float64) []float64 {
	if call == 0 {
		out := make([]float64, len(rest))
		for i := range out {
			out[i] = first
		}
		return out
	}
	return rest
}

// Identity rescale, thresh 0.1, a distance of 0.03 per call: the accumulator reaches 0.03, 0.06,
// 0.09 (skips), then 0.12 (runs, resets); the first and last calls run whatever the distance.
func TestTeaCacheAccumulates(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 8, Rows: 2}
	m := mustNew(t, "teacache", map[string]string{"thresh": "0.1"}, env)
	d := playGate(t, m, env, func(call int) []float64 { return constant(call, inf, 0.03) })
	if got, want := column(d, 0), "FSSSFSSF"; got != want {
		t.Errorf("decisions %s, want %s", got, want)
	}
	// A zero distance never accumulates: everything between the first and the last call skips.
	m = mustNew(t, "teacache", nil, env)
	d = playGate(t, m, env, func(call int) []float64 { return constant(call, inf, 0) })
	if got, want := column(d, 0), "FSSSSSSF"; got != want {
		t.Errorf("zero distance: %s, want %s", got, want)
	}
	if m.Notes()[0].Type != "full" {
		t.Errorf("last call noted %q, want full", m.Notes()[0].Type)
	}
}

// The calibration's polynomial rescales the distance (numpy.poly1d: highest degree first); a
// distance whose rescale is not finite makes the call run.
func TestTeaCacheRescale(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 8, Rows: 2, Calibration: &Calibration{Model: "m", Sampler: "ddim", Steps: 8, TeaCache: []float64{2, 0}}}
	m := mustNew(t, "teacache", map[string]string{"thresh": "0.1"}, env)
	d := playGate(t, m, env, func(call int) []float64 { return constant(call, inf, 0.03) })
	if got, want := column(d, 0), "FSFSFSFF"; got != want {
		t.Errorf("doubled distance: %s, want %s", got, want)
	}
	// TeaCache4FLUX's coefficients at x = 0.1, against the sum of powers.
	flux := []float64{4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01}
	tc := &teaCache{poly: flux}
	var want float64
	for i, c := range flux {
		want += c * math.Pow(0.1, float64(len(flux)-1-i))
	}
	if got := tc.rescale(0.1); math.Abs(got-want) > 1e-12 {
		t.Errorf("rescale(0.1) = %v, want %v", got, want)
	}
	// rescale=identity ignores the calibration: 0.03 per call as in TestTeaCacheAccumulates.
	m = mustNew(t, "teacache", map[string]string{"thresh": "0.1", "rescale": "identity"}, env)
	d = playGate(t, m, env, func(call int) []float64 { return constant(call, inf, 0.03) })
	if got, want := column(d, 0), "FSSSFSSF"; got != want {
		t.Errorf("identity with a calibration: %s, want %s", got, want)
	}
	// A polynomial that is −∞ at +∞ (even degree, negative lead) must not turn a missing
	// reference into a skip.
	env.Calibration.TeaCache = []float64{-1, 0, 0}
	m = mustNew(t, "teacache", map[string]string{"thresh": "0.1"}, env)
	d = playGate(t, m, env, func(call int) []float64 {
		if call == 3 {
			return []float64{inf}
		}
		return constant(call, inf, 0.01)
	})
	if got, want := column(d, 0), "FSSFSSSF"; got != want {
		t.Errorf("+Inf mid-run: %s, want %s", got, want)
	}
}

// Per sample, every row has its accumulator: a row's decisions are those it gets alone.
func TestTeaCachePerSample(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 10, Rows: 3}
	rows := [][]float64{{0.03}, {0.2}, {0.05}}
	m := mustNew(t, "teacache", map[string]string{"decide": "per-sample"}, env)
	d := playGate(t, m, env, func(call int) []float64 {
		if call == 0 {
			return []float64{inf, inf, inf}
		}
		return []float64{rows[0][0], rows[1][0], rows[2][0]}
	})
	for r := range 3 {
		alone := Env{Layout: smallLayout, Steps: 10, Rows: 1}
		ma := mustNew(t, "teacache", map[string]string{"decide": "per-sample"}, alone)
		da := playGate(t, ma, alone, func(call int) []float64 { return constant(call, inf, rows[r]...) })
		if column(d, r) != column(da, 0) {
			t.Errorf("row %d: %s in the batch, %s alone", r, column(d, r), column(da, 0))
		}
	}
	if got := column(d, 1); got != "FFFFFFFFFF" {
		t.Errorf("row 1 (distance 0.2 > thresh) skipped: %s", got)
	}
	if got := column(d, 0); got != "FSSSFSSSFF" {
		t.Errorf("row 0: %s, want FSSSFSSSFF", got)
	}
	// Rows 0 and 2 skip at call 1, row 1 runs: the gated blocks are noted mixed.
	m = mustNew(t, "teacache", map[string]string{"decide": "per-sample"}, env)
	p, _ := m.Plan(0, 9)
	p.Gate.Decide([]float64{inf, inf, inf})
	p.Gate.Skipped = []bool{false, false, false}
	m.Observe(0, 9, p, nil)
	p, _ = m.Plan(1, 8)
	p.Gate.Decide([]float64{0.01, 0.5, 0.01})
	p.Gate.Skipped = []bool{true, false, true}
	if err := m.Observe(1, 8, p, nil); err != nil {
		t.Fatal(err)
	}
	if n := m.Notes(); n[0].Type != "mixed" || n[len(n)-1].Type != "mixed" {
		t.Errorf("notes %+v, want mixed", n)
	}
}

// Calibration and parameter errors, the executor's reports checked, dry runs.
func TestTeaCacheErrors(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 8, Rows: 2}
	if _, _, err := New("teacache", map[string]string{"rescale": "calibrated"}, env); err == nil || !strings.Contains(err.Error(), "runbench calibrate") {
		t.Errorf("rescale=calibrated without a calibration: %v", err)
	}
	env.Calibration = &Calibration{Model: "m", Sampler: "ddim", Steps: 8, MagRatios: make([]float64, 8)}
	if _, _, err := New("teacache", map[string]string{"rescale": "calibrated"}, env); err == nil {
		t.Error("rescale=calibrated with a calibration that has no polynomial: no error")
	}
	for _, bad := range []map[string]string{{"thresh": "-1"}, {"decide": "per-row"}, {"rescale": "cubic"}, {"coeffs": "1,0"}} {
		if _, _, err := New("teacache", bad, env); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	m := mustNew(t, "teacache", nil, env)
	p, _ := m.Plan(0, 7)
	if _, err := p.Gate.Decide([]float64{1, 1}); err == nil {
		t.Error("per-batch gate took two statistics")
	}
	p.Gate.Skipped = []bool{false, false}
	if err := m.Observe(0, 7, p, nil); err != nil {
		t.Fatal(err)
	}
	p, _ = m.Plan(1, 6)
	if d, err := p.Gate.Decide([]float64{1}); err != nil || d[0] {
		t.Fatalf("distance 1: %v, %v", d, err)
	}
	if _, err := p.Gate.Decide([]float64{1}); err == nil {
		t.Error("asked twice in one call: no error")
	}
	p.Gate.Skipped = []bool{true, true}
	if err := m.Observe(1, 6, p, nil); err == nil {
		t.Error("the executor skipped what the method did not ask: no error")
	}
	if !registry["teacache"].DataDependent || !registry["fbcache"].DataDependent || !registry["dbcache"].DataDependent || registry["magcache"].DataDependent {
		t.Error("DataDependent flags: want teacache, fbcache, dbcache, not magcache")
	}
	// A dry run never asks the gate: every call runs the stack.
	m = mustNew(t, "teacache", nil, env)
	tr, err := DryRun(m, env, flatCounter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tr.Calls {
		if c.Layers[0].Type != "full" {
			t.Fatalf("dry-run call %d noted %q", c.Call, c.Layers[0].Type)
		}
	}
}

// flatCounter bills every block one FLOP.
type flatCounter struct{}

func (flatCounter) BlockFLOPs(p *hook.Plan, _ int) []int64 {
	f := make([]int64, len(p.Blocks))
	for i := range f {
		f[i] = 1
	}
	return f
}
