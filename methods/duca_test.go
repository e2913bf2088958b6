package methods

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/models/dit"
)

// smallLayout is a 3-block model with a 4×4 token grid (tests that never run a network).
var smallLayout = hook.Layout{Depth: 3, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 16, GridH: 4, GridW: 4, Hidden: 8, Heads: 2}

// stepLetters summarises one call of a DuCa trace as the spec writes schedules: F, C, A for a
// call whose blocks all share that type, L0C / L0A for a full layer 0 followed by another type.
func stepLetters(t *testing.T, ns []Note) string {
	t.Helper()
	letter := map[string]string{ducaFull: "F", ducaConservative: "C", ducaAggressive: "A"}
	rest := ns[len(ns)-1].Type
	for _, n := range ns[1:] {
		if n.Type != rest {
			t.Fatalf("blocks 1.. of one call have different types: %+v", ns)
		}
	}
	if ns[0].Type == rest {
		return letter[rest]
	}
	if ns[0].Type != ducaFull {
		t.Fatalf("layer 0 is %s, the rest %s", ns[0].Type, rest)
	}
	return "L0" + letter[rest]
}

// ducaSchedule plans every call of a run and returns "49F 48C ..." with the plans.
func ducaSchedule(t *testing.T, params map[string]string, env Env) (string, []*hook.Plan, *duca) {
	t.Helper()
	m, _, err := New("duca", params, env)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	var plans []*hook.Plan
	for call := range env.Steps {
		step := env.Steps - 1 - call
		p, err := m.Plan(call, step)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Observe(call, step, p, nil); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, strconv.Itoa(step)+stepLetters(t, m.Notes()))
		plans = append(plans, p)
	}
	return strings.Join(parts, " "), plans, m.(*duca)
}

// DuCa's step types: with a constant interval T (r0 = 0 turns the interval update off, so T = N), a cycle
// after a full step at s counts down F, then q = s mod T odd → conservative, even → aggressive.
func TestDuCaStepTypes(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string // steps 19 … 0
	}{
		// T = 3: "48 F, 47 A, 46 C".
		{3, "19F 18F 17A 16C 15F 14A 13C 12F 11A 10C 9F 8A 7C 6F 5A 4C 3F 2A 1C 0F"},
		// T = 4: F, C(3), A(2), C(1).
		{4, "19F 18A 17C 16F 15C 14A 13C 12F 11C 10A 9C 8F 7C 6A 5C 4F 3C 2A 1C 0F"},
		// T = 5: F, A(4), C(3), A(2), C(1).
		{5, "19F 18C 17A 16C 15F 14A 13C 12A 11C 10F 9A 8C 7A 6C 5F 4A 3C 2A 1C 0F"},
	} {
		got, _, _ := ducaSchedule(t, map[string]string{"N": strconv.Itoa(c.n), "ratio": "0"}, Env{Layout: smallLayout, Steps: 20, Rows: 2})
		if got != c.want {
			t.Errorf("T = %d:\n got %s\nwant %s", c.n, got, c.want)
		}
	}
}

// The DuCa README configuration on DiT-XL/2 DDIM-50 (docs/methods.md), with the faithful mid-step interval
// update (45: layer 0 full, then conservative; 32: layer 0 full, then aggressive), its FLOPs, and
// the clean variant, which types every step once.
func TestDuCaScheduleDDIM50(t *testing.T) {
	c, err := dit.Preset("DiT-XL/2", 256)
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Layout: c.Layout(), Steps: 50, Rows: 2}
	params := map[string]string{"N": "3", "ratio": "0.05"}
	got, plans, _ := ducaSchedule(t, params, env)
	const specPrefix = "49F 48C 47A 46C 45L0C 44F 43C 42A 41C 40F 39C 38A 37C 36F 35C 34A 33C 32L0A 31C 30F 29A " +
		"28C 27F 26A 25C 24F 23A 22C 21F 20A 19C 18F 17C 16F 15C 14F"
	const want = specPrefix + " 13C 12F 11C 10F 9C 8F 7C 6F 5C 4F 3C 2F 1C 0F"
	if got != want {
		t.Errorf("schedule\n got %s\nwant %s", got, want)
	}
	whole := hook.Span{From: 0, To: 27}
	for call, p := range plans {
		step := 49 - call
		switch step {
		case 47: // whole stack skipped
			if len(p.Skips) != 1 || p.Skips[0].Span != whole || p.Skips[0].Mode != hook.SkipReplace || p.Skips[0].Source != nil || p.Keep != nil {
				t.Errorf("step 47: skips %+v keep %v, want the whole stack replaced and nothing kept", p.Skips, p.Keep)
			}
		case 32: // layer 0 full, blocks 1..27 output the stack's stored output
			if len(p.Skips) != 1 || p.Skips[0].Span != (hook.Span{From: 1, To: 27}) || p.Skips[0].Source == nil || *p.Skips[0].Source != whole ||
				p.Blocks[0].Modules[0].Action != hook.Full || p.Blocks[1].Modules[0].Action != hook.Skip {
				t.Errorf("step 32: skips %+v, want blocks 1..27 replaced from the whole-stack cache after a full layer 0", p.Skips)
			}
		case 45, 48:
			if len(p.Skips) != 0 || !slices.Equal(p.Keep, []hook.Span{whole}) {
				t.Errorf("step %d: skips %+v keep %v, want the whole stack kept", step, p.Skips, p.Keep)
			}
			if a := p.Blocks[1].Modules; a[0].Action != hook.Reuse || a[1].Action != hook.Partial {
				t.Errorf("step %d block 1: %s/%s, want reuse/partial", step, a[0].Action, a[1].Action)
			}
		}
	}
	base, _, _ := New("none", nil, env)
	bt, err := DryRun(base, env, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := New("duca", params, env)
	tr, err := DryRun(m, env, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	speedup := float64(bt.TotalFLOPs) / float64(tr.TotalFLOPs)
	t.Logf("DuCa N=3 r0=0.05: %d FLOPs = %.6f T, %.4fx", tr.TotalFLOPs, float64(tr.TotalFLOPs)/1e12, speedup)
	if tr.TotalFLOPs != 9_575_027_995_904 || math.Round(speedup*100) != 248 {
		t.Errorf("DuCa FLOPs %d (%.4fx), want 9575027995904 (9.58 T, 2.48x)", tr.TotalFLOPs, speedup)
	}

	params["mode"] = "clean"
	got, _, _ = ducaSchedule(t, params, env)
	if strings.Contains(got, "L0") || !strings.HasPrefix(got, "49F 48C 47A 46C 45F 44F") || !strings.Contains(got, " 32F 31C 30F ") {
		t.Errorf("clean schedule %s: want every step typed once (45F, 32F)", got)
	}
}

// The three step types as plans: a full step refreshes the base score its score needs, a
// conservative one recomputes k = 8 of 16 tokens by the rule the executor runs (DuCa's β = 0.8,
// 2×2 cells, λ3/N), an aggressive one skips the block (so the executor's staleness counters,
// kept per module on the device, do not move; harness/executor tests the counters).
func TestDuCaStepPlans(t *testing.T) {
	for _, score := range []string{"attention", "vnorm", "random", "norm"} {
		env := Env{Layout: smallLayout, Steps: 20, Rows: 2, Samples: []int{7}}
		m, _, err := New("duca", map[string]string{"N": "3", "ratio": "0.5", "scheduler": "constant", "score": score}, env)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for call := range 20 {
			step := 19 - call
			p, err := m.Plan(call, step)
			if err != nil {
				t.Fatal(err)
			}
			typ := m.Notes()[1].Type
			seen[typ] = true
			mp := p.Blocks[1].Modules[1]
			switch typ {
			case ducaFull:
				want := map[string]hook.TokenScore{"attention": hook.ScoreAttention, "vnorm": hook.ScoreValueNorm}[score]
				if p.Blocks[1].Refresh != want || mp.Action != hook.Full {
					t.Errorf("%s step %d (full): refresh %s, MLP %s", score, step, p.Blocks[1].Refresh, mp.Action)
				}
			case ducaAggressive:
				if mp.Action != hook.Skip {
					t.Errorf("%s step %d (aggressive): MLP %s, want skip", score, step, mp.Action)
				}
			case ducaConservative:
				s := mp.Select
				if mp.Action != hook.Partial || mp.Tokens != nil || s == nil || s.K != 8 || s.Score.String() != score ||
					s.Grid != 2 || s.Beta != 0.8 || s.StaleWeight != 0.25 || s.StaleNorm != 3 {
					t.Fatalf("%s step %d (conservative): MLP plan %+v, selection %+v", score, step, mp, s)
				}
				if (score == "random") != (s.Random != nil) || (s.Random != nil && (len(s.Random) != 2 || !slices.Equal(s.Random[0], s.Random[1]))) {
					t.Errorf("%s step %d: random base %v (want one draw shared by the image and its null row)", score, step, s.Random)
				}
			}
		}
		if len(seen) != 3 {
			t.Errorf("%s: saw block types %v, want all three", score, seen)
		}
	}
}

// Parameter errors are one clear line.
func TestNewMethodParamErrors(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 50, Rows: 2}
	for _, c := range []struct {
		method string
		params map[string]string
		want   string
	}{
		{"duca", map[string]string{"speed": "3"}, `has no parameter "speed"`},
		{"duca", map[string]string{"ratio": "1.5"}, "want a number in [0, 1]"},
		{"duca", map[string]string{"N": "0"}, "want an integer in [1, 1000]"},
		{"duca", map[string]string{"score": "kv-norm"}, "want one of attention, vnorm, random"},
		{"duca", map[string]string{"scheduler": "ToCa-pixart"}, "want one of"},
		{"taylorseer", map[string]string{"order": "9"}, "want an integer in [0, 8]"},
		{"taylorseer", map[string]string{"N": "x"}, "want an integer"},
		{"taylorseer", map[string]string{"ratio": "0.1"}, `has no parameter "ratio"`},
		{"deltadit", map[string]string{"blocks": "4"}, "blocks=4 cached blocks do not fit a model of depth 3"},
		{"deltadit", map[string]string{"blocks": "0"}, "do not fit a model of depth 3"},
		{"deltadit", map[string]string{"boundary": "50"}, "boundary 50 is not a step index of a 50-step run"},
		{"deltadit", map[string]string{"boundary": "-2"}, "want an integer in [-1, 100000]"},
		{"deltadit", map[string]string{"N": "0"}, "want an integer in [1, 1000]"},
	} {
		_, _, err := New(c.method, c.params, env)
		if err == nil {
			t.Errorf("%s %v: want an error", c.method, c.params)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "method "+c.method) {
			t.Errorf("%s %v: error %q, want one line naming the method and containing %q", c.method, c.params, msg, c.want)
		}
	}
}
