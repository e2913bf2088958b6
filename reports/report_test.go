package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var keepReport = os.Getenv("CACHEBENCH_KEEP_REPORT") // a directory to inspect the fixture's report in

func TestWriteReport(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	r, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if keepReport != "" {
		dir = keepReport
	}
	written, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2*2+4 {
		t.Errorf("wrote %d files, want 4 figures and 4 documents: %q", len(written), written)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`\]\((figures/[^)]+)\)`).FindAllStringSubmatch(string(md), -1)
	if len(links) != 4 {
		t.Errorf("report.md links %d figure files, want 4", len(links))
	}
	for _, l := range links {
		data, err := os.ReadFile(filepath.Join(dir, l[1]))
		if err != nil {
			t.Fatalf("report.md links a missing file: %v", err)
		}
		if strings.HasSuffix(l[1], ".png") {
			checkPNG(t, l[1], data)
		} else {
			checkSVG(t, l[1], data)
		}
	}
	for _, want := range []string{"## DiT-XL/2, ddim, 50 steps, cfg 1.5, seed 0", "| none   |", "1 running run(s) not reported", "- Not plotted: FID vs FLOPs speedup: 1 run(s)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	// Self-contained: every image is a data: URL, nothing points at figures/.
	if n := strings.Count(string(html), `src="data:image/png;base64,`); n != 2 || strings.Contains(string(html), "figures/") {
		t.Errorf("report.html has %d inline figures (want 2) or links figures/", n)
	}
	if !strings.Contains(string(html), "N=3, note=a|b*c") || !strings.Contains(string(html), "<table") {
		t.Error("report.html lacks its tables")
	}
	tex, err := os.ReadFile(filepath.Join(dir, "tables.tex"))
	if err != nil || strings.Count(string(tex), `\begin{tabular}`) != 2 {
		t.Errorf("tables.tex: %v, want 2 tabulars", err)
	}
}

func TestPrint(t *testing.T) {
	d := loadFixture(t, Options{})
	r, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Format{FormatText, FormatMarkdown, FormatLaTeX, FormatHTML} {
		var buf bytes.Buffer
		if err := r.Print(&buf, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.Contains(buf.String(), "FLOPs: the databases hold no FLOPs counts") {
			t.Errorf("%s output lacks the missing-FLOPs note:\n%s", f, buf.String())
		}
	}
	if _, err := ParseFormat("pdf"); err == nil {
		t.Error("pdf: want an error")
	}
	if f, err := ParseFormat("markdown"); err != nil || f != FormatMarkdown {
		t.Errorf("markdown: %v %v", f, err)
	}
}

// A builder (the later step_stats diagnostics) adds to every section without touching the others.
func TestBuilders(t *testing.T) {
	d := loadFixture(t, Options{})
	var seen []string
	r, err := New(d, AddTable, func(s *Section) error {
		seen = append(seen, s.ID)
		s.Notes = append(s.Notes, "diagnostics go here")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != "1-dit-xl-2" || len(r.Sections[0].Figures) != 0 || r.Sections[0].Notes[0] != "diagnostics go here" {
		t.Errorf("sections %q, %+v", seen, r.Sections[0].Notes)
	}
}
