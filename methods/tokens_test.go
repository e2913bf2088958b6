package methods

import (
	"reflect"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

// Every score is a rule the executor carries out on the device (harness/executor tests the
// rule by hand); the plan names it with ToCa's or DuCa's constants, and a dry run bills the same
// FLOPs whatever the score.
func TestTokenRule(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 10, Rows: 2}
	for method, beta := range map[string]float32{"toca": 0.6, "duca": 0.8} {
		m, _, err := New(method, map[string]string{"N": "3", "ratio": "0.25", "score": "norm", "scheduler": "constant"}, env)
		if err != nil {
			t.Fatal(err)
		}
		var mp hook.ModulePlan
		for call := 0; call < env.Steps && mp.Action != hook.Partial; call++ {
			p, err := m.Plan(call, env.Steps-1-call)
			if err != nil {
				t.Fatal(err)
			}
			mp = p.Blocks[1].Modules[1]
		}
		want := hook.Selection{K: 4, Score: hook.ScoreNorm, StaleWeight: 0.25, StaleNorm: 3, Grid: 2, Beta: beta}
		if mp.Action != hook.Partial || mp.Tokens != nil || mp.Select == nil || !reflect.DeepEqual(*mp.Select, want) {
			t.Fatalf("%s: partial MLP plan %+v, want the selection %+v", method, mp, want)
		}
	}
	// Dry runs: the same FLOPs whatever the score (schedules do not depend on scores).
	var totals []int64
	for _, score := range []string{"attention", "similarity", "norm"} {
		m, _, err := New("toca", map[string]string{"N": "3", "score": score}, env)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := DryRun(m, env, countFLOPs{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		totals = append(totals, tr.TotalFLOPs)
	}
	if totals[0] == 0 || totals[1] != totals[0] || totals[2] != totals[0] {
		t.Errorf("dry-run FLOPs by score attention/similarity/norm: %v, want equal and nonzero", totals)
	}
}

// countFLOPs bills 1 per recomputed token of every module (enough to compare plans).
type countFLOPs struct{}

func (countFLOPs) BlockFLOPs(p *hook.Plan, rows int) []int64 {
	out := make([]int64, len(p.Blocks))
	for b, bp := range p.Blocks {
		for _, mp := range bp.Modules {
			switch mp.Action {
			case hook.Full:
				out[b] += int64(rows * smallLayout.Tokens)
			case hook.Partial:
				out[b] += int64(rows * mp.Fresh())
			}
		}
	}
	return out
}

// A gate's blocks are summarised as executed: S when every row skipped, M when some did.
func TestTraceGateLetters(t *testing.T) {
	l := hook.Layout{Depth: 3, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 4, GridH: 2, GridW: 2}
	for _, c := range []struct {
		skipped []bool
		want    string
	}{{nil, "FFF"}, {[]bool{true, true}, "FSS"}, {[]bool{true, false}, "FMM"}, {[]bool{false, false}, "FFF"}} {
		p := hook.FullPlan(l)
		p.Gate = &hook.Gate{Span: hook.Span{From: 1, To: 2}, Stat: hook.StatResidual, Skipped: c.skipped}
		tr := &Trace{}
		tr.Record(0, 0, 0, p, nil, make([]int64, 3), 4)
		if tr.Schedule[0] != c.want {
			t.Errorf("skipped %v: schedule %q, want %q", c.skipped, tr.Schedule[0], c.want)
		}
	}
}
