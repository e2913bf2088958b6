package methods

import (
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

// The `similarity` and `norm` scores defer the choice into the forward: the picker takes the
// model's score as the base score, adds staleness and the grid bonus, takes the top k and updates
// the counters, exactly as a planned score would; a dry run resolves it from staleness alone and
// bills the same FLOPs as the attention score.
func TestDeferredTokenChoice(t *testing.T) {
	env := Env{Layout: smallLayout, Steps: 10, Rows: 2}
	for _, method := range []string{"toca", "duca"} {
		m, _, err := New(method, map[string]string{"N": "3", "ratio": "0.25", "score": "norm", "scheduler": "constant"}, env)
		if err != nil {
			t.Fatal(err)
		}
		var e *tokenEngine
		if tc, ok := m.(*toca); ok {
			e = tc.engine
		} else {
			e = m.(*duca).engine
		}
		// Plan until block 1's MLP is partial (its first since a full step: counters all 0).
		var mp hook.ModulePlan
		for call := 0; call < env.Steps && mp.Action != hook.Partial; call++ {
			p, err := m.Plan(call, env.Steps-1-call)
			if err != nil {
				t.Fatal(err)
			}
			mp = p.Blocks[1].Modules[1]
		}
		for r, row := range e.stale[1] {
			if slices.Max(row) != 0 {
				t.Fatalf("%s: row %d staleness %v before the first partial step, want 0", method, r, row)
			}
		}
		if mp.Action != hook.Partial || mp.Tokens != nil || mp.Choose == nil || mp.Choose.Score != hook.ScoreNorm {
			t.Fatalf("%s: partial MLP plan %+v, want a deferred norm choice", method, mp)
		}
		// k = int(0.25·16) = 4. Row 0 scores token i (i+1)/100, row 1 (16−i)/100. The best token
		// of each 2×2 cell gains β (ToCa 0.6, DuCa 0.8): row 0's cell winners 15, 13, 7, 5 become
		// 0.256, 0.224, 0.128, 0.096 (ToCa) or 0.288, 0.252, 0.144, 0.108 (DuCa), so token 14
		// (0.15) comes third and 12 (0.13) beats 7 only without DuCa's larger bonus.
		score := [][]float32{make([]float32, 16), make([]float32, 16)}
		for i := range 16 {
			score[0][i], score[1][i] = float32(i+1)/100, float32(16-i)/100
		}
		fresh, err := mp.Choose.Pick(score)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][][]int32{"toca": {{15, 13, 14, 12}, {0, 2, 1, 3}}, "duca": {{15, 13, 14, 7}, {0, 2, 1, 8}}}[method]
		if !slices.EqualFunc(fresh, want, slices.Equal) {
			t.Errorf("%s: picked %v, want %v", method, fresh, want)
		}
		for r, row := range e.stale[1] {
			for i, c := range row {
				if w := int32(1); slices.Contains(want[r], int32(i)) {
					w = 0
					if c != w {
						t.Errorf("%s: row %d token %d: staleness %d after refresh, want 0", method, r, i, c)
					}
				} else if c != w {
					t.Errorf("%s: row %d token %d: staleness %d, want 1", method, r, i, c)
				}
			}
		}
		if _, err := mp.Choose.Pick(score[:1]); err == nil {
			t.Errorf("%s: a score for 1 of 2 rows: want an error", method)
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
				out[b] += int64(rows * len(mp.Tokens[0]))
			}
		}
	}
	return out
}
