package reports

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/cachebench/cachebench/harness/store"
)

// Kind says how a column's cells are rendered.
type Kind int

const (
	KindText    Kind = iota // KindText is free text, left-aligned.
	KindNumber              // KindNumber is a Value with a fixed number of decimals, right-aligned.
	KindSpeedup             // KindSpeedup is a Value rendered as a ratio with a × sign.
)

// Better says which direction of a column is better; headers show it as an arrow, as the papers do.
type Better int

const (
	NoDirection    Better = iota // NoDirection: neither direction is better (FLOPs, latency, text).
	LowerIsBetter                // LowerIsBetter marks FID, sFID, KID.
	HigherIsBetter               // HigherIsBetter marks IS, precision, recall, CLIP and speedups.
)

// Column is one column of a Table.
type Column struct {
	Name   string // Name is the header without unit or arrow, e.g. "FID", "FLOPs".
	Unit   string // Unit is shown in parentheses after the name ("" for none), e.g. "T", "s".
	Kind   Kind   // Kind selects the rendering of the cells.
	Digits int    // Digits is the number of decimals of KindNumber and KindSpeedup cells.
	Better Better // Better is the direction shown by the header's arrow.
}

// Cell is one table cell: Text in KindText columns, Value in the others.
type Cell struct {
	Text  string // Text is the content of a KindText cell.
	Value Value  // Value is the content of a KindNumber or KindSpeedup cell.
}

// Table is one paper table: the runs of one group, with the notes that qualify its numbers.
type Table struct {
	Title   string   // Title names the group (model, sampler, steps, cfg, seed).
	Columns []Column // Columns are the table's columns.
	Rows    [][]Cell // Rows hold one cell per column.
	Notes   []string // Notes are printed under the table.
}

// metricColumn describes how a stored metric is shown; order is the papers' column order.
type metricColumn struct {
	name string
	col  Column
}

var metricColumns = []metricColumn{
	{"fid", Column{Name: "FID", Kind: KindNumber, Digits: 2, Better: LowerIsBetter}},
	{"sfid", Column{Name: "sFID", Kind: KindNumber, Digits: 2, Better: LowerIsBetter}},
	{"is", Column{Name: "IS", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	{"precision", Column{Name: "Precision", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	{"recall", Column{Name: "Recall", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	{"kid", Column{Name: "KID", Kind: KindNumber, Digits: 4, Better: LowerIsBetter}},
	{"clip_score", Column{Name: "CLIP", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	// The embedded default's metrics: Fashion-MNIST classifier features, never Inception's.
	{"fid_fmnist", Column{Name: "FID-FMNIST", Kind: KindNumber, Digits: 2, Better: LowerIsBetter}},
	{"is_fmnist", Column{Name: "IS-FMNIST", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	{"class_acc", Column{Name: "Class acc.", Kind: KindNumber, Digits: 3, Better: HigherIsBetter}},
	{"psnr_vs_none", Column{Name: "PSNR vs none", Kind: KindNumber, Digits: 2, Better: HigherIsBetter}},
	{"ssim_vs_none", Column{Name: "SSIM vs none", Kind: KindNumber, Digits: 3, Better: HigherIsBetter}},
}

// metricColumnOf returns the column of a metric name; names the papers do not use are shown as stored.
func metricColumnOf(name string) Column {
	for _, m := range metricColumns {
		if m.name == name {
			return m.col
		}
	}
	return Column{Name: name, Kind: KindNumber, Digits: 3}
}

// hiddenMetrics are stored but neither tabulated nor plotted: clip_score_pairs_clamped differs
// from clip_score only when a pair's cosine is negative, which a real CLIP model on its own prompt
// practically never gives, so its column would repeat CLIP's; SQL users find it in the table.
var hiddenMetrics = map[string]bool{store.MetricCLIPScorePairsClamped: true}

// groupMetricColumn is the column of a metric in one group's table, with the notes it needs.
// Only the CLIP score depends on the rows: its header names the CLIP model that computed it.
func groupMetricColumn(rows []*Row, name string) (Column, []string) {
	col := metricColumnOf(name)
	if name != store.MetricCLIPScore {
		return col, nil
	}
	return clipColumn(rows, col)
}

// clipColumn names the CLIP column after the model its scores were computed with, when they were
// stored with a CLIP extractor id (store.CLIPExtractor): scores of different CLIP models or
// preprocessing differ by points (≈16 against ≈27 for the same PixArt-α images in the
// literature), so a bare "CLIP" would invite comparing them with any paper's. The uint8 value
// range, torchmetrics' on uint8 images, is the default and left out of the header. Scores stored
// without a CLIP id keep the plain header and add no note.
func clipColumn(rows []*Row, col Column) (Column, []string) {
	var ids []string
	runs := map[string][]string{}
	for _, r := range rows {
		m, ok := r.Metrics[store.MetricCLIPScore]
		if !ok {
			continue
		}
		if _, seen := runs[m.Extractor]; !seen {
			ids = append(ids, m.Extractor)
		}
		runs[m.Extractor] = append(runs[m.Extractor], r.label())
	}
	recorded := slices.ContainsFunc(ids, func(id string) bool { _, _, ok := store.CLIPModel(id); return ok })
	switch {
	case !recorded:
		return col, nil
	case len(ids) > 1:
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = fmt.Sprintf("%q for %s", id, strings.Join(runs[id], ", "))
		}
		return col, []string{"CLIP: these runs were scored with different CLIP models or preprocessing, whose scores do not compare: " +
			strings.Join(parts, "; ") + ". Rescore them with one model (runbench clipscore --db)."}
	}
	model, vr, _ := store.CLIPModel(ids[0])
	if vr != "uint8" {
		model += ", " + vr
	}
	col.Name += " (" + model + ")"
	var resize string
	for _, r := range rows {
		if m, ok := r.Metrics[store.MetricCLIPScore]; ok {
			resize = m.Resize
			break
		}
	}
	note := fmt.Sprintf("CLIP: torchmetrics' CLIPScore, max(mean 100·cos, 0), of each image with its own prompt, with %s", ids[0])
	if resize != "" {
		note += " (" + resize + ")"
	}
	return col, []string{note + "; it compares only with CLIP scores of the same model and preprocessing."}
}

// metricNames returns the metric names present in the rows, in the papers' column order
// (known names first, the others alphabetically).
func metricNames(rows []*Row) []string {
	present := map[string]bool{}
	for _, r := range rows {
		for n := range r.Metrics {
			if !hiddenMetrics[n] {
				present[n] = true
			}
		}
		if r.Published != nil { // a published metric gets its column even before it is measured
			for n := range r.Published.Values {
				if !strings.HasSuffix(n, "_speedup") {
					present[n] = true
				}
			}
		}
	}
	var out []string
	for _, m := range metricColumns {
		if present[m.name] {
			out = append(out, m.name)
			delete(present, m.name)
		}
	}
	return append(out, sortedKeys(present)...)
}

// scale is a unit and the factor that converts a quantity into it.
type scale struct {
	unit   string
	factor float64
	digits int
}

// flopsScale picks the largest SI unit that keeps the largest value at or above 1.
func flopsScale(rows []*Row) scale {
	top := 0.0
	for _, r := range rows {
		if r.FLOPs.Known {
			top = math.Max(top, r.FLOPs.V)
		}
	}
	for _, s := range []scale{{"P", 1e15, 2}, {"T", 1e12, 2}, {"G", 1e9, 2}, {"M", 1e6, 2}} {
		if top >= s.factor {
			return s
		}
	}
	return scale{"", 1, 0}
}

// latencyScale shows seconds as the papers do, milliseconds when every image takes less than a second.
func latencyScale(rows []*Row) scale {
	for _, r := range rows {
		if r.Latency.Known && r.Latency.V >= 1000 {
			return scale{"s", 1000, 3}
		}
	}
	return scale{"ms", 1, 2}
}

func scaled(v Value, s scale) Value {
	if !v.Known {
		return v
	}
	return known(v.V / s.factor)
}

// NewTable builds the table of a group: method, setting, FLOPs, FLOPs speedup, latency,
// latency speedup, then the metrics any of its runs has, in the papers' order.
func NewTable(g *Group) Table {
	fs, ls := flopsScale(g.Rows), latencyScale(g.Rows)
	metrics := metricNames(g.Rows)
	published := publishedNames(g.Rows)
	paperCol := func(c Column) Column { c.Name += " (paper)"; return c }
	t := Table{Title: g.Title, Notes: slices.Clone(g.Notes), Columns: []Column{
		{Name: "Method", Kind: KindText},
		{Name: "Setting", Kind: KindText},
		{Name: "FLOPs", Unit: fs.unit, Kind: KindNumber, Digits: fs.digits},
		{Name: "FLOPs speedup", Kind: KindSpeedup, Digits: 2, Better: HigherIsBetter},
	}}
	if published["flops_speedup"] {
		t.Columns = append(t.Columns, paperCol(t.Columns[3]))
	}
	t.Columns = append(t.Columns, Column{Name: "Latency", Unit: ls.unit, Kind: KindNumber, Digits: ls.digits},
		Column{Name: "Latency speedup", Kind: KindSpeedup, Digits: 2, Better: HigherIsBetter})
	if published["latency_speedup"] {
		t.Columns = append(t.Columns, paperCol(t.Columns[len(t.Columns)-1]))
	}
	memory := slices.ContainsFunc(g.Rows, func(r *Row) bool { return r.CacheBytes.Known })
	if memory {
		t.Columns = append(t.Columns, Column{Name: "Cache", Unit: "MiB", Kind: KindNumber, Digits: 2})
	}
	for _, m := range metrics {
		col, notes := groupMetricColumn(g.Rows, m)
		t.Columns = append(t.Columns, col)
		t.Notes = append(t.Notes, notes...)
		// A paper's CLIP score was computed with the paper's CLIP: its column keeps the plain name.
		if published[m] {
			t.Columns = append(t.Columns, paperCol(metricColumnOf(m)))
		}
	}
	var sources []string
	for _, r := range g.Rows {
		paper := func(name string) Cell {
			if r.Published == nil {
				return Cell{}
			}
			if v, ok := r.Published.Values[name]; ok {
				return Cell{Value: known(v)}
			}
			return Cell{}
		}
		cells := []Cell{{Text: r.Method}, {Text: r.Setting}, {Value: scaled(r.FLOPs, fs)}, {Value: r.FLOPsSpeedup}}
		if published["flops_speedup"] {
			cells = append(cells, paper("flops_speedup"))
		}
		cells = append(cells, Cell{Value: scaled(r.Latency, ls)}, Cell{Value: r.LatencySpeedup})
		if published["latency_speedup"] {
			cells = append(cells, paper("latency_speedup"))
		}
		if memory {
			v := r.CacheBytes
			if v.Known {
				v = known(v.V / (1 << 20))
			}
			cells = append(cells, Cell{Value: v})
		}
		for _, m := range metrics {
			var v Value
			if x, ok := r.Metrics[m]; ok {
				v = known(x.Value)
			}
			cells = append(cells, Cell{Value: v})
			if published[m] {
				cells = append(cells, paper(m))
			}
		}
		t.Rows = append(t.Rows, cells)
		if r.Published != nil && !slices.Contains(sources, r.Published.Source) {
			sources = append(sources, r.Published.Source)
		}
	}
	if len(sources) > 0 {
		t.Notes = append(t.Notes, "(paper) columns: the published numbers of the same configuration, from "+strings.Join(sources, "; ")+
			". They were measured on the authors' hardware and evaluator; compare the trends, and the measured columns with each other.")
	}
	return t
}

// publishedNames reports which quantities some row has published numbers for.
func publishedNames(rows []*Row) map[string]bool {
	out := map[string]bool{}
	for _, r := range rows {
		if r.Published != nil {
			for k := range r.Published.Values {
				out[k] = true
			}
		}
	}
	return out
}

// Tables builds one table per group, in group order.
func (d *Data) Tables() []Table {
	out := make([]Table, len(d.Groups))
	for i, g := range d.Groups {
		out[i] = NewTable(g)
	}
	return out
}

// style is what differs between output formats in headers and cells.
type style struct {
	missing string              // an unknown value
	times   string              // the speedup sign
	lower   string              // the lower-is-better arrow
	higher  string              // the higher-is-better arrow
	escape  func(string) string // text escaping
}

var (
	plainStyle = style{missing: "–", times: "×", lower: " ↓", higher: " ↑", escape: func(s string) string { return s }}
	mdStyle    = style{missing: "–", times: "×", lower: " ↓", higher: " ↑", escape: escapeMarkdown}
	texStyle   = style{missing: "--", times: `$\times$`, lower: ` $\downarrow$`, higher: ` $\uparrow$`, escape: escapeLaTeX}
)

func (s style) header(c Column) string {
	h := s.escape(c.Name)
	if c.Unit != "" {
		h += " (" + s.escape(c.Unit) + ")"
	}
	switch c.Better {
	case LowerIsBetter:
		h += s.lower
	case HigherIsBetter:
		h += s.higher
	}
	return h
}

func (s style) cell(c Column, x Cell) string {
	if c.Kind == KindText {
		return s.escape(x.Text)
	}
	if !x.Value.Known || math.IsNaN(x.Value.V) || math.IsInf(x.Value.V, 0) {
		return s.missing
	}
	v := strconv.FormatFloat(x.Value.V, 'f', c.Digits, 64)
	if c.Kind == KindSpeedup {
		v += s.times
	}
	return v
}

func (t Table) headers(s style) []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = s.header(c)
	}
	return out
}

func (t Table) cells(s style) [][]string {
	out := make([][]string, len(t.Rows))
	for i, row := range t.Rows {
		out[i] = make([]string, len(t.Columns))
		for j, c := range t.Columns {
			if j < len(row) {
				out[i][j] = s.cell(c, row[j])
			} else {
				out[i][j] = s.missing
			}
		}
	}
	return out
}

func (t Table) aligns() []tw.Align {
	out := make([]tw.Align, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = tw.AlignRight
		if c.Kind == KindText {
			out[i] = tw.AlignLeft
		}
	}
	return out
}

// render draws the table with a tablewriter renderer, keeping headers as written (tablewriter
// upper-cases them by default) and numbers right-aligned.
func (t Table) render(w io.Writer, r tw.Renderer, s style) error {
	al := tw.CellAlignment{PerColumn: t.aligns()}
	tb := tablewriter.NewTable(w, tablewriter.WithRenderer(r), tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignmentConfig(al), tablewriter.WithRowAlignmentConfig(al))
	tb.Header(t.headers(s))
	if err := tb.Bulk(t.cells(s)); err != nil {
		return fmt.Errorf("table %q: %w", t.Title, err)
	}
	if err := tb.Render(); err != nil {
		return fmt.Errorf("table %q: %w", t.Title, err)
	}
	return nil
}

// Text writes the table for a terminal: its title, a box-drawn table and its notes.
func (t Table) Text(w io.Writer) error {
	if _, err := fmt.Fprintln(w, t.Title); err != nil {
		return err
	}
	if err := t.render(w, renderer.NewBlueprint(), plainStyle); err != nil {
		return err
	}
	for _, n := range t.Notes {
		if _, err := fmt.Fprintln(w, "  note: "+n); err != nil {
			return err
		}
	}
	return nil
}

// Markdown writes the table as a GitHub-flavoured Markdown table followed by its notes as a
// list; the title is left to the caller, which knows the heading level.
func (t Table) Markdown(w io.Writer) error {
	if err := t.render(w, renderer.NewMarkdown(), mdStyle); err != nil {
		return err
	}
	if len(t.Notes) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	for _, n := range t.Notes {
		if _, err := fmt.Fprintln(w, "- "+n); err != nil {
			return err
		}
	}
	return nil
}

// HTML writes the table as an HTML <table> (content escaped) followed by its notes.
func (t Table) HTML(w io.Writer) error {
	if err := t.render(w, renderer.NewHTML(renderer.HTMLConfig{EscapeContent: true, TableClass: "results"}), plainStyle); err != nil {
		return err
	}
	if len(t.Notes) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("<ul class=\"notes\">\n")
	for _, n := range t.Notes {
		b.WriteString("<li>" + escapeHTML(n) + "</li>\n")
	}
	b.WriteString("</ul>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// LaTeX writes the table as a booktabs table environment, notes as comments above it.
//
// tablewriter has no LaTeX renderer, and its renderer interface is built around drawing
// character grids (borders, junctions, padding), not around the \toprule/\midrule/\bottomrule
// rules and & separators booktabs wants — a dozen lines of our own are simpler and exact.
func (t Table) LaTeX(w io.Writer) error {
	var b strings.Builder
	b.WriteString("% Generated by runbench report; needs \\usepackage{booktabs}.\n")
	for _, n := range t.Notes {
		b.WriteString("% Note: " + strings.ReplaceAll(n, "\n", " ") + "\n")
	}
	spec := make([]byte, len(t.Columns))
	for i, c := range t.Columns {
		spec[i] = 'r'
		if c.Kind == KindText {
			spec[i] = 'l'
		}
	}
	b.WriteString("\\begin{table}[t]\n\\centering\n")
	b.WriteString("\\caption{" + escapeLaTeX(t.Title) + "}\n")
	b.WriteString("\\begin{tabular}{" + string(spec) + "}\n\\toprule\n")
	b.WriteString(strings.Join(t.headers(texStyle), " & ") + " \\\\\n\\midrule\n")
	for _, row := range t.cells(texStyle) {
		b.WriteString(strings.Join(row, " & ") + " \\\\\n")
	}
	b.WriteString("\\bottomrule\n\\end{tabular}\n\\end{table}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// escapeLaTeX makes text safe in a LaTeX table cell or caption.
func escapeLaTeX(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\textbackslash{}`)
		case '&', '%', '$', '#', '_', '{', '}':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '~':
			b.WriteString(`\textasciitilde{}`)
		case '^':
			b.WriteString(`\textasciicircum{}`)
		case '–':
			b.WriteString("--")
		case '×':
			b.WriteString(`$\times$`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeMarkdown keeps a table cell one cell (|) and literal (emphasis, code, links, HTML).
func escapeMarkdown(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', '|', '*', '_', '`', '[', ']':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

func escapeHTML(s string) string { return htmlEscaper.Replace(s) }
