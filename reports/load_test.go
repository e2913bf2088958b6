package reports

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

func hasNote(notes []string, sub string) bool {
	for _, n := range notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func TestLoadFixture(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	if len(d.Groups) != 2 {
		t.Fatalf("%d groups, want 2 (cfg 1.5 and cfg 4.5)", len(d.Groups))
	}
	g := d.Groups[0]
	var methods []string
	for _, r := range g.Rows {
		methods = append(methods, r.Method+" "+r.Setting)
	}
	want := "none |steps steps=20|fora N=3|fora N=5|toca N=3, ratio=0.07, ratio_scheduler=ToCa-ddim50"
	if got := strings.Join(methods, "|"); got != want {
		t.Errorf("rows %q, want %q", got, want)
	}
	none, steps := g.Rows[0], g.Rows[1]
	if none.Latency != known(4549) || none.LatencyFrom != "image timings" {
		t.Errorf("none latency %v from %q, want 4549 ms from image timings (run-level compile time excluded)", none.Latency, none.LatencyFrom)
	}
	if steps.Key.Steps != 50 || steps.Baseline != none || steps.LatencySpeedup != known(4549.0/1820) {
		t.Errorf("the 20-step run should be measured against none at 50 steps: key %+v, speedup %v", steps.Key, steps.LatencySpeedup)
	}
	if d.Groups[1].Rows[0].LatencyFrom != "step timings" || d.Groups[1].Rows[0].Latency != known(1301) {
		t.Errorf("duca latency %v from %q, want 1301 ms from step timings", d.Groups[1].Rows[0].Latency, d.Groups[1].Rows[0].LatencyFrom)
	}
	if !hasNote(d.Notes, "1 running run(s) not reported: 6") {
		t.Errorf("notes %q: want the running run 6 listed", d.Notes)
	}
	if hasNote(d.Notes, "FLOPs: the databases hold no FLOPs") {
		t.Errorf("notes %q: FLOPs are known", d.Notes)
	}
}

func TestStoredFLOPs(t *testing.T) {
	path := writeDB(t, filepath.Join(t.TempDir(), "f.db"),
		fixtureRun{method: "none", steps: 10, cfg: 1.5, imageMS: 100, runFLOPs: &store.RunFLOPs{PerImage: 4e9, BasePerImage: 4e9, Speedup: 1, RowsPerImage: 2}},
		fixtureRun{method: "fora", params: map[string]any{"N": 2}, steps: 10, cfg: 1.5, imageMS: 50, batchFLOP: []int64{4e9, 4e9}},
		fixtureRun{method: "fora", params: map[string]any{"N": 4}, steps: 10, cfg: 1.5, imageMS: 40, batchFLOP: []int64{2e9}}, // one batch not counted
		fixtureRun{method: "toca", steps: 20, cfg: 1.5, imageMS: 40, runFLOPs: &store.RunFLOPs{PerImage: 2e9, BasePerImage: 8e9, Speedup: 4, RowsPerImage: 2}},
	)
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := d.Groups[0].Rows
	if r[0].FLOPs != known(4e9) || r[1].FLOPs != known(2e9) || r[1].FLOPsSpeedup != known(2) {
		t.Errorf("none %v, fora N=2 %v (%v): want 4e9 planned, 2e9 executed per image, 2×", r[0].FLOPs, r[1].FLOPs, r[1].FLOPsSpeedup)
	}
	if r[2].FLOPs.Known || r[2].FLOPsSpeedup.Known {
		t.Errorf("a partly counted run must have no FLOPs, got %v", r[2].FLOPs)
	}
	// No none run at 20 steps: the runner's own none count gives the FLOPs speedup, latency stays blank.
	toca := d.Groups[1].Rows[0]
	if toca.FLOPsSpeedup != known(4) || toca.LatencySpeedup.Known {
		t.Errorf("toca without a none run: FLOPs speedup %v (want 4), latency speedup %v (want blank)", toca.FLOPsSpeedup, toca.LatencySpeedup)
	}
	if !hasNote(d.Groups[1].Notes, "counted on the reference schedule") {
		t.Errorf("notes %q", d.Groups[1].Notes)
	}
}

func TestBaselineRules(t *testing.T) {
	dir := t.TempDir()
	a := writeDB(t, filepath.Join(dir, "a.db"),
		fixtureRun{method: "none", steps: 50, cfg: 1.5, imageMS: 100, metrics: map[string]float64{"fid": 2}},
		fixtureRun{method: "none", steps: 100, cfg: 1.5, imageMS: 200},
		fixtureRun{method: "steps", params: map[string]any{"steps": 25}, steps: 25, cfg: 1.5, imageMS: 50},
		fixtureRun{method: "fora", params: map[string]any{"N": 3}, steps: 50, cfg: 1.5, imageMS: 50, device: "gpu", dupMetric: true, metrics: map[string]float64{"fid": 3}},
	)
	b := writeDB(t, filepath.Join(dir, "b.db"),
		fixtureRun{method: "fora", params: map[string]any{"N": 3}, steps: 50, cfg: 1.5, imageMS: 50, device: "gpu"}, // same config as a.db's
		fixtureRun{method: "fora", params: map[string]any{"N": 2}, steps: 50, cfg: 1.5},                             // wall clock only
	)
	d, err := Load(a, b)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*Row{}
	for _, g := range d.Groups {
		for _, r := range g.Rows {
			rows[r.Method+" "+r.Setting+" "+r.Source[len(dir)+1:]] = r
		}
	}
	if r := rows["steps steps=25 a.db"]; r == nil || r.Baseline != nil || r.LatencySpeedup.Known {
		t.Errorf("steps=25 with none runs at 50 and 100 steps must have no baseline: %+v", r)
	}
	if r := rows["fora N=3 a.db"]; r == nil || r.LatencySpeedup.Known || r.Metrics["fid"].Value != 3 {
		t.Errorf("fora on another device: latency speedup must be blank and the FID over 50000 samples shown: %+v", r)
	}
	if _, dup := rows["fora N=3 b.db"]; dup || d.Sources[1].Skipped != 1 {
		t.Errorf("b.db's copy of a run of a.db must be skipped (sources %+v)", d.Sources)
	}
	r := rows["fora N=2 b.db"]
	if r == nil || r.LatencyFrom != "batch wall clock" || r.Latency != known(2500) || r.LatencySpeedup != known(100.0/2500) {
		t.Errorf("fora N=2 from b.db: want 2500 ms from the batches' wall clock, measured against a.db's none: %+v", r)
	}
	var groupNotes []string
	for _, g := range d.Groups {
		groupNotes = append(groupNotes, g.Notes...)
	}
	for _, want := range []string{"ran on gpu (go), its baseline on cpu (go)", "b.db has no none run with this key", "schedule it shortens is ambiguous"} {
		if !hasNote(groupNotes, want) {
			t.Errorf("group notes %q: want %q", groupNotes, want)
		}
	}
	for _, want := range []string{"has the same configuration as run 4 of a.db", "has 2 fid values"} {
		if !hasNote(d.Notes, want) {
			t.Errorf("notes %q: want %q", d.Notes, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	db, err := store.Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	running := writeDB(t, filepath.Join(dir, "running.db"), fixtureRun{method: "none", steps: 5, status: store.StatusRunning})
	for _, c := range []struct {
		paths []string
		want  string
		is    error
	}{
		{[]string{text}, "is not an SQLite database", store.ErrNotSQLite},
		{[]string{empty}, "holds no runs", ErrNoRuns},
		{[]string{running}, "no finished runs", nil},
		{[]string{filepath.Join(dir, "missing.db")}, "no such file", nil},
		{nil, "no database given", nil},
	} {
		_, err := Load(c.paths...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("Load(%v) = %v, want one line containing %q", c.paths, err, c.want)
		}
	}
}
