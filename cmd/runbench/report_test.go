package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

// reportDB writes a small finished sweep: none and fora N=3, with timings and FIDs.
func reportDB(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "sweep.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, m := range []struct {
		method, params string
		ms, fid        float64
	}{{"none", "", 400, 2.4}, {"fora", `"params":{"N":3},`, 200, 3.9}} {
		run, _, err := db.EnsureRun(store.Run{ConfigJSON: `{"method":"` + m.method + `",` + m.params + `"steps":10}`, Method: m.method,
			Model: "DiT-S/2", Sampler: "ddim", Steps: 10, CFGScale: 1.5, NumSamples: 2, BatchSize: 2, Device: "cpu"})
		if err != nil {
			t.Fatal(err)
		}
		var cache map[string]int64
		if m.method == "fora" {
			cache = map[string]int64{"total": 3 << 20, "attn": 1 << 20, "mlp": 2 << 20}
		}
		if err := db.CommitBatch(run.ID, store.Batch{Index: 0, NumSamples: 2, FLOPs: int64(4e9 / (i + 1)),
			Timings: []store.Timing{{Scope: "image", Name: "sample", Count: 2, TotalMS: 2 * m.ms}}, CacheBytes: cache}); err != nil {
			t.Fatal(err)
		}
		if err := db.PutMetrics(run.ID, []store.Metric{{Name: "fid", Value: m.fid, N: 2}, {Name: "is", Value: 10 - m.fid, N: 2}}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetStatus(run.ID, store.StatusDone); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func runReport(args ...string) (string, error) {
	cmd := newReportCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestReportCLI(t *testing.T) {
	dir := t.TempDir()
	db := reportDB(t, dir)
	out, err := runReport(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DiT-S/2, ddim, 10 steps, cfg 1.5, seed 0", "│ fora   │ N=3", "2.00×", "3.90", "Cache (MiB)", "3.00"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal report lacks %q:\n%s", want, out)
		}
	}
	if out, err = runReport(db, "--format", "latex"); err != nil || !strings.Contains(out, `\toprule`) {
		t.Errorf("latex: %v\n%s", err, out)
	}

	rep := filepath.Join(dir, "rep")
	if out, err = runReport(db, db, "--out", rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote 4 figure files") {
		t.Errorf("output %q: want FID × 2 speedups × PNG and SVG (IS is in the table only)", out)
	}
	for _, f := range []string{"report.md", "report.html", "tables.tex", "report.txt", "figures/1-dit-s-2-fid-vs-flops.png"} {
		if st, err := os.Stat(filepath.Join(rep, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	only := filepath.Join(dir, "only")
	if _, err = runReport(db, "--out", only, "--format", "html"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(only); len(entries) != 1 || entries[0].Name() != "report.html" {
		t.Errorf("--format html --out: want report.html alone, got %v", entries)
	}
}

// --experiment puts the published numbers of each configuration beside the measured ones,
// matched by method and parameters, and names their source.
func TestReportPublished(t *testing.T) {
	dir := t.TempDir()
	db := reportDB(t, dir)
	exp := filepath.Join(dir, "paper.toml")
	body := `[model]
preset = "DiT-S/2"
[sampling]
sampler = "ddim"
steps = 10
samples = 2
[methods.none]
paper = { fid = 2.43, is = 241.25, source = "Paper A, Table 1" }
[methods.fora]
N = 3
paper = { fid = 3.88, flops_speedup = 2.76, source = "Paper A, Table 1" }
[methods.fora5]
method = "fora"
N = 5
paper = { fid = 6.58, source = "Paper B" }
`
	if err := os.WriteFile(exp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runReport(db, "--experiment", exp, "--format", "md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FID (paper)", "FLOPs speedup (paper)", "IS (paper)", " 3.88 |", " 2.76× |", " 241.25 |", "Paper A, Table 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "6.58") || strings.Contains(out, "Paper B") {
		t.Errorf("a configuration without a run shows its published numbers:\n%s", out)
	}
	plain, err := runReport(db, "--format", "md")
	if err != nil || strings.Contains(plain, "(paper)") {
		t.Errorf("without --experiment: %v\n%s", err, plain)
	}
}

func TestReportCLIErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "results.csv")
	if err := os.WriteFile(text, []byte("method,fid\nnone,2.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	db, err := store.Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{text}, "results.csv: is not an SQLite database"},
		{[]string{empty}, "empty.db: holds no runs"},
		{[]string{reportDB(t, dir), "--format", "pdf"}, `unknown report format "pdf"`},
		{nil, "give at least one results database"},
	} {
		_, err := runReport(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("report %v: %v, want one line with %q", c.args, err, c.want)
		}
	}
}
