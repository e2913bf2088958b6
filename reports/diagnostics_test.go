package reports

import (
	"bytes"
	"image/png"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"

	"github.com/cachebench/cachebench/harness/store"
)

// stepRows is a recording of calls × blocks: MLP rows with their dynamics, an audited error on
// the cached calls (every other one) when audited, and the sampler state's error.
func stepRows(calls, blocks int, audited bool, scale float64) []store.StepStat {
	f := func(v float64) *float64 { return &v }
	var out []store.StepStat
	for c := range calls {
		for b := range blocks {
			s := store.StepStat{Call: c, Step: calls - 1 - c, Block: b, Module: "mlp", Action: "full"}
			if c > 0 {
				s.DynRelL1, s.DynRelL2 = f(0.1*scale), f(0.1*scale)
			}
			if audited && c%2 == 1 {
				s.Action, s.ErrRelL2 = "reuse", f(scale*float64(c+b))
			}
			out = append(out, s)
		}
		out = append(out, store.StepStat{Call: c, Step: calls - 1 - c, Block: -1, Module: "state", ErrRelL2: f(scale * float64(c))})
	}
	return out
}

// The step_stats figures: the per-call small multiples of the MLP cache error and of the state's
// deviation, then the per-run heatmaps, under one "Cache error per step" heading, then the
// dynamics; runs without MLP error rows are noted, not drawn as exact.
func TestAddDiagnosticsFigures(t *testing.T) {
	r := diagnosticsReport(t,
		fixtureRun{method: "none", steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, false, 0)},
		fixtureRun{method: "fora", params: map[string]any{"N": 2}, steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, true, 0.01)},
		fixtureRun{method: "fora", params: map[string]any{"N": 3}, steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, true, 0.02)},
		fixtureRun{method: "teacache", params: map[string]any{"thresh": 0.1}, steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, false, 0.03)},
		fixtureRun{method: "toca", params: map[string]any{"N": 3}, steps: 6, cfg: 1.5},
	)
	s := r.Sections[0]
	var got []string
	for _, f := range s.Figures {
		got = append(got, strings.TrimPrefix(f.Name, s.ID+"-")+"|"+f.Claim)
	}
	want := []string{"diag-mlp-error|" + claimStepError, "diag-accumulation|" + claimStepError,
		"diag-1|" + claimStepError, "diag-2|" + claimStepError, "diag-3|" + claimStepError, "diag-dynamics|" + claimDynamics}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("figures %q, want %q", got, want)
	}
	panels := func(i int) string {
		var ts []string
		for _, p := range s.Figures[i].Panels.Plots {
			ts = append(ts, p.Title.Text)
		}
		return strings.Join(ts, ",")
	}
	if mlp, acc := panels(0), panels(1); mlp != "fora" || acc != "fora,teacache" {
		t.Errorf("panels: MLP error %s, accumulation %s; want fora and fora,teacache", mlp, acc)
	}
	notes := strings.Join(s.Notes, "\n")
	for _, want := range []string{"MLP cache error of teacache", "1 run(s) have no step statistics"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	if strings.Contains(notes, "of none") {
		t.Errorf("notes %q name none, which has no cache", notes)
	}
	var md bytes.Buffer
	if err := r.markdown(&md, func(n string) string { return "figures/" + n }); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(md.String(), "### "+claimStepError); n != 1 {
		t.Errorf("report.md heads %q %d times, want once", claimStepError, n)
	}
}

// A panels figure renders at the panels' size under its header, about 1000 px wide, its title
// wrapped to the width.
func TestPanelsFigureRender(t *testing.T) {
	r := diagnosticsReport(t,
		fixtureRun{method: "none", steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, false, 0)},
		fixtureRun{method: "fora", params: map[string]any{"N": 2}, steps: 6, cfg: 1.5, stepStats: stepRows(6, 3, true, 0.01)},
	)
	f := r.Sections[0].Figures[0]
	f.Subtitle = longGroupTitle
	w, h := f.size()
	pw, ph := f.Panels.Size()
	if w != pw || h <= ph || h > ph+vg.Inch {
		t.Errorf("figure %v × %v, panels %v × %v: want the panels' width and a header of under an inch", w, h, pw, ph)
	}
	p, sub := f.panelsHeader(w)
	for _, line := range append(strings.Split(p.Title.Text, "\n"), strings.Split(sub, "\n")...) {
		if lw := p.Title.TextStyle.Width(line); lw > w-2*vg.Points(figureMargin) {
			t.Errorf("header line %q is %v wide, the figure %v", line, lw, w)
		}
	}
	if squash(p.Title.Text) != squash(f.Title) {
		t.Errorf("title %q lost text of %q", p.Title.Text, f.Title)
	}
	var buf bytes.Buffer
	if err := f.Render(&buf, "png"); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 950 || b.Dx() > 1050 {
		t.Errorf("PNG %d px wide, want about 1000", b.Dx())
	}
}

// diagnosticsReport writes the runs to a database and builds its report with AddDiagnostics.
func diagnosticsReport(t *testing.T, runs ...fixtureRun) *Report {
	t.Helper()
	d, err := LoadWith(Options{}, writeDB(t, filepath.Join(t.TempDir(), "diag.db"), runs...))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(d, AddDiagnostics)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
