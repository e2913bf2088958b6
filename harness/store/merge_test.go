package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// fill commits batches [first, first+n) of size bs of two runs into db, with FLOPs, metrics
// only where all samples are present (as runbench does).
func fill(t *testing.T, db *DB, ranges [][2]int, bs int) []Run {
	t.Helper()
	var runs []Run
	for _, name := range []string{"fora", "toca"} {
		cfg, _ := CanonicalJSON(map[string]any{"method": name, "steps": 50})
		r, _, err := db.EnsureRun(Run{ConfigJSON: string(cfg), Method: name, NumSamples: 8, BatchSize: bs})
		if err != nil {
			t.Fatal(err)
		}
		for _, rg := range ranges {
			for first := rg[0]; first < rg[1]; first += bs {
				n := min(bs, rg[1]-first)
				b := testBatch(first, first, n)
				b.FLOPs = int64(100 * n)
				b.StepStats = []StepStat{{Sample: &b.Samples[0].Index, Call: 1, Step: 2, Block: 0, Module: "attn"}, {Call: 1, Step: 2, Block: -1, Module: "output"}}
				for i := range b.Samples {
					b.Samples[i].OutputHash = name + "-" + b.Samples[i].OutputPath
				}
				if err := db.CommitBatch(r.ID, b); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := db.AddTimings(r.ID, []Timing{{Scope: "compile", Count: 1, TotalMS: 3}}); err != nil {
			t.Fatal(err)
		}
		if err := db.PutRunFLOPs(r.ID, RunFLOPs{PerImage: 100, BasePerImage: 250, Speedup: 2.5, RowsPerImage: 2, Convention: "blocks"}); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	return runs
}

func resultRows(t *testing.T, db *DB) string {
	t.Helper()
	rows, err := db.ResultRows()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

// Two shards (different batch boundaries) merged equal the unsharded file; merging again
// changes nothing; contradictions are refused and leave the destination unchanged.
func TestMergeShards(t *testing.T) {
	dir := t.TempDir()
	whole := mustOpen(t, filepath.Join(dir, "whole.db"))
	for _, r := range fill(t, whole, [][2]int{{0, 8}}, 3) {
		if err := whole.SetStatus(r.ID, StatusDone); err != nil {
			t.Fatal(err)
		}
	}
	shards := []string{filepath.Join(dir, "s0.db"), filepath.Join(dir, "s1.db")}
	for i, rg := range [][2]int{{0, 4}, {4, 8}} {
		db := mustOpen(t, shards[i])
		fill(t, db, [][2]int{rg}, 3)
		db.Close()
	}
	out := mustOpen(t, filepath.Join(dir, "out.db"))
	for i, s := range shards {
		st, err := out.Merge(s)
		if err != nil {
			t.Fatal(err)
		}
		if st.Runs != 2 || st.Batches != 4 || st.Samples != 8 || st.NewRuns != 2*(1-i) {
			t.Errorf("merge %s: %+v", s, st)
		}
	}
	if got, want := resultRows(t, out), resultRows(t, whole); got != want {
		t.Fatalf("merged rows differ from the unsharded file:\n%s\nwant\n%s", got, want)
	}
	if d1, _ := out.ResultDigest(); d1 == "" {
		t.Fatal("empty digest")
	}
	// Executed FLOPs and timings came along.
	runs, _ := out.Runs()
	if f, n, err := out.ExecutedFLOPs(runs[0].ID); err != nil || f != 800 || n != 8 {
		t.Errorf("executed flops %d over %d samples (%v), want 800 over 8", f, n, err)
	}
	if ts, _ := out.Timings(runs[0].ID); len(ts) != 2*1+4*2 {
		t.Errorf("%d timings, want 2 run-level + 8 batch-level", len(ts))
	}
	if n := queryInt(t, out.SQL(), "SELECT count(*) FROM step_stats WHERE sample IS NOT NULL"); n != 8 {
		t.Errorf("%d per-sample step_stats rows after the merge, want 8 (one per shard batch)", n)
	}
	if n := queryInt(t, out.SQL(), "SELECT count(*) FROM step_stats WHERE sample IS NULL"); n != 8 {
		t.Errorf("%d batch-level step_stats rows after the merge, want 8 (2 runs × 4 batches)", n)
	}
	before := resultRows(t, out)
	st, err := out.Merge(shards[0])
	if err != nil || st.Batches != 0 || st.Duplicates != 4 {
		t.Errorf("re-merge: %+v %v", st, err)
	}
	if resultRows(t, out) != before {
		t.Error("re-merging a shard changed the results")
	}
	// A shard whose sample differs is refused, atomically.
	bad := mustOpen(t, filepath.Join(dir, "bad.db"))
	rs := fill(t, bad, [][2]int{{0, 4}}, 4)
	if _, err := bad.SQL().Exec("UPDATE samples SET output_hash = 'other' WHERE run_id = ? AND sample_index = 2", rs[1].ID); err != nil {
		t.Fatal(err)
	}
	bad.Close()
	if _, err := out.Merge(filepath.Join(dir, "bad.db")); err == nil || !strings.Contains(err.Error(), "sample 2") {
		t.Errorf("differing sample: %v", err)
	}
	// The same hash with another configuration is refused.
	conf := mustOpen(t, filepath.Join(dir, "conf.db"))
	rs = fill(t, conf, [][2]int{{0, 2}}, 2)
	if _, err := conf.SQL().Exec(`UPDATE runs SET config_json = '{"method":"fora","steps":51}' WHERE id = ?`, rs[0].ID); err != nil {
		t.Fatal(err)
	}
	conf.Close()
	if _, err := out.Merge(filepath.Join(dir, "conf.db")); err == nil || !strings.Contains(err.Error(), "different configurations") {
		t.Errorf("mismatched config: %v", err)
	}
	if resultRows(t, out) != before {
		t.Error("a refused merge changed the destination")
	}
	if _, err := out.Merge(filepath.Join(dir, "out.db")); err == nil {
		t.Error("merging a file into itself was accepted")
	}
}
