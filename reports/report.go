package reports

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Format is an output format of a report.
type Format string

const (
	FormatText     Format = "text"  // FormatText is box-drawn tables for a terminal.
	FormatMarkdown Format = "md"    // FormatMarkdown is report.md with figures linked from figures/.
	FormatLaTeX    Format = "latex" // FormatLaTeX is booktabs tables for a paper (tables.tex).
	FormatHTML     Format = "html"  // FormatHTML is a self-contained report.html (figures inline).
)

// Formats lists the formats in the order Write writes them.
var Formats = []Format{FormatMarkdown, FormatHTML, FormatLaTeX, FormatText}

// ParseFormat accepts a format name (text, md, latex, html; also markdown, tex, txt).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "text", "txt", "terminal":
		return FormatText, nil
	case "md", "markdown":
		return FormatMarkdown, nil
	case "latex", "tex":
		return FormatLaTeX, nil
	case "html":
		return FormatHTML, nil
	}
	return "", fmt.Errorf("unknown report format %q (want text, md, latex or html)", s)
}

// fileName is where Write puts each format's document.
func (f Format) fileName() string {
	switch f {
	case FormatMarkdown:
		return "report.md"
	case FormatHTML:
		return "report.html"
	case FormatLaTeX:
		return "tables.tex"
	default:
		return "report.txt"
	}
}

// Section is the part of a report about one group: its tables, figures and notes.
type Section struct {
	ID      string   // ID prefixes the section's figure files; unique in the report.
	Title   string   // Title is the group's title.
	Group   *Group   // Group is the data the section shows.
	Tables  []Table  // Tables are the section's tables.
	Figures []Figure // Figures are the section's figures.
	Notes   []string // Notes are about the section's figures (tables carry their own).
}

// Builder adds its part to a group's section. A report runs every builder on every group, so a
// new analysis (the step_stats diagnostics: step × block heatmaps, error accumulation,
// token-refresh maps) is one more Builder, reading its table through the group's runs.
type Builder func(s *Section) error

// AddTable is the Builder of the paper table of a section's group.
func AddTable(s *Section) error {
	s.Tables = append(s.Tables, NewTable(s.Group))
	return nil
}

// AddTradeoffFigures is the Builder of the quality-versus-speedup figures of a section's group.
func AddTradeoffFigures(s *Section) error {
	figs, skipped := NewFigures(s.Group, s.ID)
	s.Figures = append(s.Figures, figs...)
	s.Notes = append(s.Notes, skipped...)
	return nil
}

// DefaultBuilders are the builders of a report when New is given none: tables, then figures.
func DefaultBuilders() []Builder {
	return []Builder{AddTable, AddTradeoffFigures, AddSampleGrids, AddDiagnostics}
}

// Report is a report ready to render: one section per group.
type Report struct {
	Title    string    // Title heads the documents.
	Sources  []Source  // Sources are the databases it was built from.
	Notes    []string  // Notes concern the whole report.
	Sections []Section // Sections are one per group.
}

// New assembles the report of d with the builders (DefaultBuilders when none are given).
func New(d *Data, builders ...Builder) (*Report, error) {
	if len(builders) == 0 {
		builders = DefaultBuilders()
	}
	r := &Report{Title: "cachebench report", Sources: d.Sources, Notes: d.Notes}
	for i, g := range d.Groups {
		s := Section{ID: fileStem(fmt.Sprintf("%d %s", i+1, g.Key.Model)), Title: g.Title, Group: g}
		for _, b := range builders {
			if err := b(&s); err != nil {
				return nil, fmt.Errorf("section %q: %w", g.Title, err)
			}
		}
		r.Sections = append(r.Sections, s)
	}
	return r, nil
}

func (r *Report) figureCount() int {
	n := 0
	for _, s := range r.Sections {
		n += len(s.Figures)
	}
	return n
}

func (r *Report) sourceLines() []string {
	out := make([]string, len(r.Sources))
	for i, s := range r.Sources {
		out[i] = fmt.Sprintf("%s (schema v%d, %d runs, %d reported)", s.Path, s.Schema, s.Runs, s.Runs-s.Skipped)
	}
	return out
}

// Print writes the report to w in one format without touching the disk: the tables and notes;
// figures need files (use Write) except in HTML, where they are inline.
func (r *Report) Print(w io.Writer, f Format) error {
	switch f {
	case FormatText:
		return r.text(w)
	case FormatMarkdown:
		return r.markdown(w, nil)
	case FormatLaTeX:
		return r.latex(w)
	case FormatHTML:
		pngs, err := r.renderFigures("png")
		if err != nil {
			return err
		}
		return r.html(w, pngs)
	}
	return fmt.Errorf("unknown report format %q", f)
}

// Write writes the report into dir (created if needed): each format's document (all of
// Formats when none are given) and, for Markdown, every figure as figures/NAME.png and .svg.
// It returns the paths written.
func (r *Report) Write(dir string, formats ...Format) ([]string, error) {
	if len(formats) == 0 {
		formats = Formats
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	var pngs map[string][]byte
	for _, f := range formats {
		if f != FormatMarkdown && f != FormatHTML {
			continue
		}
		var err error
		if pngs, err = r.renderFigures("png"); err != nil {
			return nil, err
		}
		break
	}
	wantFiles := false
	for _, f := range formats {
		wantFiles = wantFiles || f == FormatMarkdown
	}
	if wantFiles && r.figureCount() > 0 {
		svgs, err := r.renderFigures("svg")
		if err != nil {
			return nil, err
		}
		figDir := filepath.Join(dir, "figures")
		if err := os.MkdirAll(figDir, 0o755); err != nil {
			return nil, err
		}
		for _, s := range r.Sections {
			for _, fig := range s.Figures {
				for ext, data := range map[string][]byte{"png": pngs[fig.Name], "svg": svgs[fig.Name]} {
					p := filepath.Join(figDir, fig.Name+"."+ext)
					if err := os.WriteFile(p, data, 0o644); err != nil {
						return nil, err
					}
				}
				written = append(written, filepath.Join(figDir, fig.Name+".png"), filepath.Join(figDir, fig.Name+".svg"))
			}
		}
	}
	for _, f := range formats {
		var buf bytes.Buffer
		var err error
		switch f {
		case FormatMarkdown:
			err = r.markdown(&buf, func(name string) string { return "figures/" + name })
		case FormatHTML:
			err = r.html(&buf, pngs)
		case FormatLaTeX:
			err = r.latex(&buf)
		case FormatText:
			err = r.text(&buf)
		default:
			err = fmt.Errorf("unknown report format %q", f)
		}
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, f.fileName())
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		written = append(written, p)
	}
	return written, nil
}

// renderFigures renders every figure in one format, keyed by name.
func (r *Report) renderFigures(format string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, s := range r.Sections {
		for _, f := range s.Figures {
			var buf bytes.Buffer
			if err := f.Render(&buf, format); err != nil {
				return nil, err
			}
			out[f.Name] = buf.Bytes()
		}
	}
	return out, nil
}

// ew writes formatted text and remembers the first error, so documents read as straight prose.
type ew struct {
	w   io.Writer
	err error
}

func (e *ew) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *ew) do(f func(io.Writer) error) {
	if e.err == nil {
		e.err = f(e.w)
	}
}

func (r *Report) text(w io.Writer) error {
	e := &ew{w: w}
	e.printf("%s\n", r.Title)
	for _, l := range r.sourceLines() {
		e.printf("  database: %s\n", l)
	}
	for _, n := range r.Notes {
		e.printf("  note: %s\n", n)
	}
	for _, s := range r.Sections {
		e.printf("\n")
		for _, t := range s.Tables {
			e.do(t.Text)
		}
	}
	if n := r.figureCount(); n > 0 {
		e.printf("\n%d figures: runbench report --out DIR writes them with report.md and report.html.\n", n)
	}
	return e.err
}

// markdown writes report.md; figure maps a figure name to its path without extension (nil:
// figures are not on disk, so the document says how to get them instead).
func (r *Report) markdown(w io.Writer, figure func(name string) string) error {
	e := &ew{w: w}
	e.printf("# %s\n\n", r.Title)
	for _, l := range r.sourceLines() {
		e.printf("- Database: %s\n", escapeMarkdown(l))
	}
	if len(r.Notes) > 0 {
		e.printf("\n**Notes**\n\n")
		for _, n := range r.Notes {
			e.printf("- %s\n", n)
		}
	}
	for _, s := range r.Sections {
		e.printf("\n## %s\n\n", escapeMarkdown(s.Title))
		for _, t := range s.Tables {
			e.do(t.Markdown)
		}
		claim := ""
		for _, f := range s.Figures {
			if c := cmp.Or(f.Claim, "Figures"); c != claim {
				claim = c
				e.printf("\n### %s\n\n", escapeMarkdown(claim))
			}
			alt := f.caption()
			if figure == nil {
				e.printf("- %s (runbench report --out DIR writes the figure)\n", escapeMarkdown(alt))
				continue
			}
			p := figure(f.Name)
			// The setting is in the figure's subtitle and the section's heading; the caption
			// repeats the short title so that the text reads without the image.
			e.printf("![%s](%s.png)\n\n*%s* ([SVG](%s.svg))\n\n", escapeMarkdown(alt), p, escapeMarkdown(strings.ReplaceAll(f.Title, "\n", " ")), p)
		}
		for _, n := range s.Notes {
			e.printf("- Not plotted: %s\n", n)
		}
	}
	return e.err
}

// caption is the figure's title and setting on one line, for alt texts and lists.
func (f Figure) caption() string {
	c := strings.ReplaceAll(f.Title, "\n", " ")
	if f.Subtitle != "" {
		c += " — " + strings.ReplaceAll(f.Subtitle, "\n", " ")
	}
	return c
}

func (r *Report) latex(w io.Writer) error {
	e := &ew{w: w}
	e.printf("%% %s: tables. Generated by runbench report from:\n", r.Title)
	for _, l := range r.sourceLines() {
		e.printf("%%   %s\n", l)
	}
	for _, n := range r.Notes {
		e.printf("%% Note: %s\n", n)
	}
	for _, s := range r.Sections {
		for _, t := range s.Tables {
			e.printf("\n")
			e.do(t.LaTeX)
		}
	}
	return e.err
}

const htmlStyle = `body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}
table.results{border-collapse:collapse;margin:1em 0}
table.results th,table.results td{padding:.25em .7em;border-bottom:1px solid #ccc}
table.results th{border-bottom:2px solid #444}
ul.notes{color:#555;font-size:.9em}
figure{display:inline-block;margin:.5em}
figcaption{font-size:.9em;color:#555}`

// html writes a self-contained report.html: figures are inline PNGs (data: URLs) so the file
// can be mailed or attached as is.
func (r *Report) html(w io.Writer, pngs map[string][]byte) error {
	e := &ew{w: w}
	e.printf("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n<style>\n%s\n</style>\n</head>\n<body>\n",
		escapeHTML(r.Title), htmlStyle)
	e.printf("<h1>%s</h1>\n<ul>\n", escapeHTML(r.Title))
	for _, l := range r.sourceLines() {
		e.printf("<li>Database: %s</li>\n", escapeHTML(l))
	}
	e.printf("</ul>\n")
	if len(r.Notes) > 0 {
		e.printf("<ul class=\"notes\">\n")
		for _, n := range r.Notes {
			e.printf("<li>%s</li>\n", escapeHTML(n))
		}
		e.printf("</ul>\n")
	}
	for _, s := range r.Sections {
		e.printf("<h2>%s</h2>\n", escapeHTML(s.Title))
		for _, t := range s.Tables {
			e.do(t.HTML)
		}
		for _, f := range s.Figures {
			alt := escapeHTML(f.caption())
			e.printf("<figure><img alt=\"%s\" src=\"data:image/png;base64,%s\"><figcaption>%s</figcaption></figure>\n",
				alt, base64.StdEncoding.EncodeToString(pngs[f.Name]), alt)
		}
		if len(s.Notes) > 0 {
			e.printf("<ul class=\"notes\">\n")
			for _, n := range s.Notes {
				e.printf("<li>Not plotted: %s</li>\n", escapeHTML(n))
			}
			e.printf("</ul>\n")
		}
	}
	e.printf("</body>\n</html>\n")
	return e.err
}
