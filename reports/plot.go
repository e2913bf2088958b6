package reports

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Axis is what a figure plots quality against: a speedup, or the caches' memory.
type Axis int

const (
	FLOPsAxis   Axis = iota // FLOPsAxis is the FLOPs speedup (what the papers' headlines quote).
	LatencyAxis             // LatencyAxis is the measured wall-clock speedup.
	MemoryAxis              // MemoryAxis is the run's peak cache memory (lower is better; no baseline at 1×).
)

// String names the axis in file names.
func (a Axis) String() string {
	switch a {
	case LatencyAxis:
		return "latency"
	case MemoryAxis:
		return "memory"
	}
	return "flops"
}

func (a Axis) label() string {
	switch a {
	case LatencyAxis:
		return "wall-clock speedup (×)"
	case MemoryAxis:
		return "peak cache memory (MiB)"
	}
	return "FLOPs speedup (×)"
}

func (a Axis) speedup(r *Row) Value {
	switch a {
	case LatencyAxis:
		return r.LatencySpeedup
	case MemoryAxis:
		if !r.CacheBytes.Known {
			return Value{}
		}
		return known(r.CacheBytes.V / (1 << 20))
	}
	return r.FLOPsSpeedup
}

// axesOf are the x axes a group's figures use: both speedups, and the caches' memory when two
// or more runs recorded it.
func axesOf(g *Group) []Axis {
	n := 0
	for _, r := range g.Rows {
		if r.CacheBytes.Known {
			n++
		}
	}
	if n >= minFigurePoints {
		return []Axis{FLOPsAxis, LatencyAxis, MemoryAxis}
	}
	return []Axis{FLOPsAxis, LatencyAxis}
}

// Point is one run in a figure.
type Point struct {
	Speedup float64 // Speedup is the x coordinate.
	Quality float64 // Quality is the metric's value, the y coordinate.
	Row     *Row    // Row is the run the point shows.
}

// Series is the points of one method family, ordered by speedup.
type Series struct {
	Method string  // Method is the family.
	Points []Point // Points are ordered by speedup.
}

// Figure is one quality-versus-speedup plot of a group: one line per method family, the
// Pareto front (no run is both faster and better) drawn over them.
type Figure struct {
	Name   string   // Name is the file stem, unique within a report.
	Title  string   // Title is the plot's title.
	Metric string   // Metric is the stored metric name on the y axis.
	Axis   Axis     // Axis is the speedup on the x axis.
	Series []Series // Series are the families, in the group's row order.
	Front  []Point  // Front is the Pareto front ordered by speedup (empty when the metric has no better direction).
	// Custom, when set, is a ready plot (the step_stats diagnostics) drawn instead of a trade-off.
	Custom *plot.Plot
}

// minFigurePoints is the fewest runs worth a trade-off figure.
const minFigurePoints = 2

// NewFigures builds a group's figures: every metric its runs have against the FLOPs speedup
// and against the wall-clock speedup. A figure with fewer than two plottable runs is skipped;
// skipped says which and why. prefix makes the names unique across groups.
func NewFigures(g *Group, prefix string) (figs []Figure, skipped []string) {
	for _, m := range metricNames(g.Rows) {
		for _, axis := range axesOf(g) {
			f := Figure{Name: fileStem(prefix + "-" + m + "-vs-" + axis.String()), Metric: m, Axis: axis}
			col, _ := groupMetricColumn(g.Rows, m)
			f.Title = col.Name + " vs " + strings.TrimSuffix(axis.label(), " (×)") + "\n" + g.Title
			var all []Point
			index := map[string]int{}
			for _, r := range g.Rows {
				s, q := axis.speedup(r), r.Metrics[m]
				if _, ok := r.Metrics[m]; !ok || !s.Known || !finite(s.V) || !finite(q.Value) {
					continue
				}
				p := Point{Speedup: s.V, Quality: q.Value, Row: r}
				i, ok := index[r.Method]
				if !ok {
					i = len(f.Series)
					index[r.Method] = i
					f.Series = append(f.Series, Series{Method: r.Method})
				}
				f.Series[i].Points = append(f.Series[i].Points, p)
				all = append(all, p)
			}
			if len(all) < minFigurePoints {
				skipped = append(skipped, fmt.Sprintf("%s vs %s: %d run(s) with both values, too few to plot.", col.Name, strings.TrimSuffix(axis.label(), " (×)"), len(all)))
				continue
			}
			for i := range f.Series {
				sortPoints(f.Series[i].Points)
			}
			if axis == MemoryAxis {
				f.Front = memoryFront(all, col.Better)
			} else {
				f.Front = ParetoFront(all, col.Better)
			}
			figs = append(figs, f)
		}
	}
	return figs, skipped
}

func sortPoints(ps []Point) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Speedup < ps[j].Speedup })
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// ParetoFront returns the points no other point beats on both speedup (higher is better) and
// quality (in the direction better), ordered by speedup; nil when quality has no direction.
func ParetoFront(points []Point, better Better) []Point {
	if better == NoDirection {
		return nil
	}
	atLeast := func(a, b float64) bool { // a is at least as good a quality as b
		if better == LowerIsBetter {
			return a <= b
		}
		return a >= b
	}
	var front []Point
	for i, p := range points {
		dominated := false
		for j, q := range points {
			if i == j {
				continue
			}
			if q.Speedup >= p.Speedup && atLeast(q.Quality, p.Quality) && (q.Speedup > p.Speedup || q.Quality != p.Quality) {
				dominated = true
				break
			}
		}
		if !dominated {
			front = append(front, p)
		}
	}
	sortPoints(front)
	return front
}

// memoryFront is the Pareto front when less (memory) is better on x: the front of the points
// mirrored in x, mirrored back.
func memoryFront(points []Point, better Better) []Point {
	mirrored := make([]Point, len(points))
	for i, p := range points {
		mirrored[i] = Point{Speedup: -p.Speedup, Quality: p.Quality, Row: p.Row}
	}
	front := ParetoFront(mirrored, better)
	for i := range front {
		front[i].Speedup = -front[i].Speedup
	}
	sortPoints(front)
	return front
}

// Figure geometry. The legend has a column of its own right of the axes, so the data area
// is what is left of the width once the widest legend entry is set aside.
const (
	figureWidth  = 6.5 * vg.Inch
	figureHeight = 4 * vg.Inch

	legendGap      = 10 // points between the axes (tick labels included) and the legend column
	figureMargin   = 6  // points kept clear at the figure's right edge and either side of the title
	legendFontSize = 10 // points
	maxLegendText  = 1.4 * vg.Inch
	speedupMargin  = 0.05 // the share of the x range left empty right of the fastest run
)

var (
	frontColor    = color.RGBA{A: 255}
	baselineColor = color.Gray{Y: 110}
)

// chart is a trade-off figure ready to lay out and draw: the plot holds the title, the axes
// and the data; the legend is kept apart, for a column right of the axes where no point can be.
type chart struct {
	plot     *plot.Plot
	legend   plot.Legend     // drawn by draw in the column, never by plot.Draw (plot.Legend stays empty)
	labels   []string        // labels are the legend's entries, as drawn
	title    string          // title is the figure's title before fit wraps it to the width
	yLabel   string          // yLabel is the y axis label before fit wraps it to the height
	baseline []*plotter.Line // baseline marks 1×: a vertical line, and the baseline run's quality if one run is the baseline
}

// layout is where a chart's parts lie on its canvas.
type layout struct {
	plot   draw.Canvas  // plot is the title, the axes and the data: the canvas less the legend column
	data   draw.Canvas  // data is the area the points are drawn in, inside plot
	legend vg.Rectangle // legend is the legend's box, right of plot
}

// chart builds the trade-off plot of the figure.
func (f Figure) chart() (*chart, error) {
	p := plot.New()
	ch := &chart{plot: p, legend: plot.NewLegend(), title: f.Title}
	ch.legend.TextStyle.Font.Size = vg.Points(legendFontSize)
	ch.legend.Top, ch.legend.Left = true, true
	ch.legend.Padding = vg.Points(3)
	addLegend := func(label string, thumbs ...plot.Thumbnailer) {
		label = truncateText(ch.legend.TextStyle, label, maxLegendText)
		ch.labels = append(ch.labels, label)
		ch.legend.Add(label, thumbs...)
	}

	p.X.Label.Text = f.Axis.label()
	memory := f.Axis == MemoryAxis
	if !memory {
		p.X.Tick.Marker = baselineTicks{plot.DefaultTicks{}}
	}
	col := metricColumnOf(f.Metric)
	ch.yLabel = col.Name
	switch col.Better {
	case LowerIsBetter:
		ch.yLabel += " (lower is better)"
	case HigherIsBetter:
		ch.yLabel += " (higher is better)"
	}
	p.Y.Label.Text = ch.yLabel
	x0, x1, y0, y1, ok := f.extent()
	if !ok {
		return nil, fmt.Errorf("figure %s: no points", f.Name)
	}
	p.Add(plotter.NewGrid())

	// The baseline: a vertical line at 1×, and a horizontal one at the baseline run's quality,
	// crossing at the baseline's point.
	xmin, xmax := speedupRange(x0, x1)
	if memory { // from no memory at all to a little past the largest
		xmin, xmax = 0, x1*(1+speedupMargin)
		if xmax == 0 {
			xmax = 1
		}
	}
	ymin, ymax := padRange(y0, y1)
	dashed := func(xys plotter.XYs) (*plotter.Line, error) {
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("figure %s, baseline: %w", f.Name, err)
		}
		l.LineStyle.Color = baselineColor
		l.LineStyle.Width = vg.Points(1)
		l.LineStyle.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		return l, nil
	}
	var vert *plotter.Line
	var err error
	if !memory {
		if vert, err = dashed(plotter.XYs{{X: 1, Y: ymin}, {X: 1, Y: ymax}}); err != nil {
			return nil, err
		}
		ch.baseline = append(ch.baseline, vert)
	}
	if q, ok := f.baselineQuality(); ok && !memory {
		horiz, err := dashed(plotter.XYs{{X: xmin, Y: q}, {X: xmax, Y: q}})
		if err != nil {
			return nil, err
		}
		ch.baseline = append(ch.baseline, horiz)
	}
	for _, l := range ch.baseline {
		p.Add(l)
	}

	// The front goes first so the families' lines stay visible on top of it; its rings last.
	var ring *plotter.Scatter
	var frontLegend []plot.Thumbnailer
	if len(f.Front) > 0 {
		xys := xysOf(f.Front)
		if ring, err = plotter.NewScatter(xys); err != nil {
			return nil, fmt.Errorf("figure %s, Pareto front: %w", f.Name, err)
		}
		ring.GlyphStyle = draw.GlyphStyle{Color: frontColor, Radius: vg.Points(7), Shape: draw.RingGlyph{}}
		if len(f.Front) > 1 {
			// A step line: between two front points, the best quality reachable at that speedup
			// or more is the next point's, so the line moves at each point's speedup.
			st, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("figure %s, Pareto front: %w", f.Name, err)
			}
			st.StepStyle = plotter.PreStep
			if memory {
				// Less memory is better: up to the next point's memory, the best quality is this point's.
				st.StepStyle = plotter.PostStep
			}
			st.LineStyle.Color = frontColor
			st.LineStyle.Width = vg.Points(2.5)
			st.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			p.Add(st)
			frontLegend = append(frontLegend, st)
		}
		frontLegend = append(frontLegend, ring)
	}
	for i, s := range f.Series {
		xys := xysOf(s.Points)
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return nil, fmt.Errorf("figure %s, %s: %w", f.Name, s.Method, err)
		}
		sc.GlyphStyle.Color = plotutil.Color(i)
		sc.GlyphStyle.Shape = plotutil.Shape(i)
		sc.GlyphStyle.Radius = vg.Points(4)
		if len(s.Points) == 1 {
			p.Add(sc)
			addLegend(s.Method, sc)
			continue
		}
		ln, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("figure %s, %s: %w", f.Name, s.Method, err)
		}
		ln.LineStyle.Color = plotutil.Color(i)
		ln.LineStyle.Width = vg.Points(1.5)
		p.Add(ln, sc)
		addLegend(s.Method, ln, sc)
	}
	if ring != nil {
		p.Add(ring)
		addLegend("Pareto front", frontLegend...)
	}
	if vert != nil {
		addLegend("baseline (1×)", vert)
	}
	// After the plotters: Add widens the axes to their data, the ranges are set here.
	p.X.Min, p.X.Max = xmin, xmax
	p.Y.Min, p.Y.Max = ymin, ymax
	return ch, nil
}

// extent is the smallest and largest speedup and quality of the figure's points.
func (f Figure) extent() (x0, x1, y0, y1 float64, ok bool) {
	for _, s := range f.Series {
		for _, pt := range s.Points {
			if !ok {
				x0, x1, y0, y1, ok = pt.Speedup, pt.Speedup, pt.Quality, pt.Quality, true
			}
			x0, x1 = math.Min(x0, pt.Speedup), math.Max(x1, pt.Speedup)
			y0, y1 = math.Min(y0, pt.Quality), math.Max(y1, pt.Quality)
		}
	}
	return x0, x1, y0, y1, ok
}

// baselineQuality is the quality of the figure's baseline run: its one point of method none
// at 1×; false when there is none, or more than one.
func (f Figure) baselineQuality() (float64, bool) {
	var qs []float64
	for _, s := range f.Series {
		for _, pt := range s.Points {
			if pt.Row != nil && pt.Row.Method == "none" && pt.Speedup == 1 {
				qs = append(qs, pt.Quality)
			}
		}
	}
	if len(qs) != 1 {
		return 0, false
	}
	return qs[0], true
}

// speedupRange is the x axis of a trade-off figure: it starts at 1× (the baseline) unless a run
// is slower than the baseline, then a little left of that run, so 1× is always shown; it ends a
// little right of the fastest run, so that run's marker is not on the frame.
func speedupRange(lo, hi float64) (float64, float64) {
	lo, hi = math.Min(lo, 1), math.Max(hi, 1)
	span := hi - lo
	if span == 0 { // every run at 1×
		return lo, hi + 0.5
	}
	m := speedupMargin * span
	if lo < 1 {
		lo -= m
	}
	return lo, hi + m
}

// padRange widens a range by a margin so that no point sits on the frame.
func padRange(lo, hi float64) (float64, float64) {
	m := 0.08 * (hi - lo)
	if m == 0 {
		m = 0.05*math.Abs(lo) + 0.05
	}
	return lo - m, hi + m
}

// baselineTicks are the ticks of a speedup axis: 1× (the baseline) always has a labelled tick
// when it is in range; a labelled tick crowding it loses its label.
type baselineTicks struct{ plot.Ticker }

func (t baselineTicks) Ticks(min, max float64) []plot.Tick {
	ts := t.Ticker.Ticks(min, max)
	if min > 1 || max < 1 {
		return ts
	}
	step := math.Inf(1) // the distance between labelled ticks
	last := math.NaN()
	for _, tk := range ts {
		if tk.Label == "" {
			continue
		}
		if tk.Value == 1 {
			return ts
		}
		if !math.IsNaN(last) {
			step = math.Min(step, tk.Value-last)
		}
		last = tk.Value
	}
	if math.IsInf(step, 1) {
		step = max - min
	}
	for i := range ts {
		if ts[i].Label != "" && math.Abs(ts[i].Value-1) < 0.5*step {
			ts[i].Label = ""
		}
	}
	return append(ts, plot.Tick{Value: 1, Label: "1"})
}

// fit lays the chart out on area: the legend column at the right, sized to its widest entry;
// the title wrapped to the width left, the y label to the data area's height.
func (ch *chart) fit(area vg.Rectangle) layout {
	p := ch.plot
	sty := ch.legend.TextStyle
	var textW, entryH vg.Length
	for _, l := range ch.labels {
		textW = max(textW, sty.Width(l))
		entryH = max(entryH, sty.Rectangle(l).Max.Y)
	}
	legendW := ch.legend.ThumbnailWidth + sty.Width(" ") + textW
	n := vg.Length(len(ch.labels))
	legendH := n*entryH + max(n-1, 0)*ch.legend.Padding + sty.FontExtents().Descent

	pc := area
	pc.Max.X -= legendW + vg.Points(legendGap) + vg.Points(figureMargin)
	p.Title.Text = wrapText(p.Title.TextStyle, ch.title, pc.Size().X-2*vg.Points(figureMargin))
	p.Y.Label.Text = ch.yLabel
	plotC := draw.Canvas{Rectangle: pc}
	data := p.DataCanvas(plotC)
	if yl := wrapText(p.Y.Label.TextStyle, ch.yLabel, data.Size().Y); yl != ch.yLabel {
		p.Y.Label.Text = yl // a wider y axis leaves the data area's height as it is
		data = p.DataCanvas(plotC)
	}
	left := pc.Max.X + vg.Points(legendGap)
	return layout{
		plot: plotC,
		data: data,
		legend: vg.Rectangle{
			Min: vg.Point{X: left, Y: data.Max.Y - legendH},
			Max: vg.Point{X: left + legendW, Y: data.Max.Y},
		},
	}
}

// draw lays the chart out on c and draws it.
func (ch *chart) draw(c draw.Canvas) layout {
	l := ch.fit(c.Rectangle)
	l.plot.Canvas, l.data.Canvas = c.Canvas, c.Canvas
	ch.plot.Draw(l.plot)
	// plot.Legend draws its first entry one descent below the top of its canvas.
	lc := draw.Canvas{Canvas: c.Canvas, Rectangle: l.legend}
	lc.Max.Y += ch.legend.TextStyle.FontExtents().Descent
	ch.legend.Draw(lc)
	return l
}

// Draw draws the figure on c: a trade-off with its legend right of the axes, or the custom plot
// with its title wrapped to the width.
func (f Figure) Draw(c draw.Canvas) error {
	if f.Custom != nil {
		p := *f.Custom // a copy: the figure's plot keeps its title as given
		p.Title.Text = wrapText(p.Title.TextStyle, p.Title.Text, c.Size().X-2*vg.Points(figureMargin))
		p.Draw(c)
		return nil
	}
	ch, err := f.chart()
	if err != nil {
		return err
	}
	ch.draw(c)
	return nil
}

// wrapText breaks the lines of s so that none is wider than width in sty: after a comma if it
// can, else at a space, else (a word wider than width) between two characters.
func wrapText(sty text.Style, s string, width vg.Length) string {
	fits := func(line string) bool { return sty.Width(line) <= width }
	var out []string
	for _, line := range strings.Split(s, "\n") {
		out = append(out, wrapLine(fits, line, []string{", ", " ", ""})...)
	}
	return strings.Join(out, "\n")
}

func wrapLine(fits func(string) bool, line string, seps []string) []string {
	if fits(line) || len(seps) == 0 {
		return []string{line}
	}
	var parts []string // each part keeps the separator after it
	if seps[0] == "" {
		for _, r := range line {
			parts = append(parts, string(r))
		}
	} else {
		parts = strings.SplitAfter(line, seps[0])
	}
	var out []string
	cur := ""
	flush := func() {
		if t := strings.TrimRight(cur, " "); t != "" {
			out = append(out, t)
		}
		cur = ""
	}
	for _, part := range parts {
		if fits(strings.TrimRight(cur+part, " ")) {
			cur += part
			continue
		}
		flush()
		word := strings.TrimRight(part, " ")
		if fits(word) {
			cur = part
			continue
		}
		sub := wrapLine(fits, word, seps[1:])
		out = append(out, sub[:len(sub)-1]...)
		cur = sub[len(sub)-1] + part[len(word):]
	}
	flush()
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

// truncateText shortens s with an ellipsis until it is no wider than width in sty.
func truncateText(sty text.Style, s string, width vg.Length) string {
	if sty.Width(s) <= width {
		return s
	}
	rs := []rune(s)
	for len(rs) > 1 && sty.Width(string(rs)+"…") > width {
		rs = rs[:len(rs)-1]
	}
	return strings.TrimRight(string(rs), " ") + "…"
}

func xysOf(ps []Point) plotter.XYs {
	xys := make(plotter.XYs, len(ps))
	for i, p := range ps {
		xys[i] = plotter.XY{X: p.Speedup, Y: p.Quality}
	}
	return xys
}

// Render writes the figure as "png" or "svg".
func (f Figure) Render(w io.Writer, format string) error {
	if format != "png" && format != "svg" {
		return fmt.Errorf("figure %s: unsupported format %q (png or svg)", f.Name, format)
	}
	c, err := draw.NewFormattedCanvas(figureWidth, figureHeight, format)
	if err != nil {
		return fmt.Errorf("figure %s: %w", f.Name, err)
	}
	if err := f.Draw(draw.New(c)); err != nil {
		return err
	}
	// Render into memory first so a failed figure leaves no half-written file behind.
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return fmt.Errorf("figure %s: %w", f.Name, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// fileStem turns a name into a portable file name: lower case letters, digits, '.', '-'.
func fileStem(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '.'
		if ok {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}
