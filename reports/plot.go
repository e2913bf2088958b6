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

	"github.com/cachebench/cachebench/reports/diag"
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
	// Color is the family's palette index: its rank among the group's methods, so that a method
	// keeps its colour in every figure of the group, whichever runs a figure leaves out.
	Color int
}

// Figure is one quality-versus-speedup plot of a group: one line per method family, the
// Pareto front (no run is both faster and better) drawn over them.
type Figure struct {
	Name     string   // Name is the file stem, unique within a report.
	Title    string   // Title is the plot's title: what the figure shows, in a few words.
	Subtitle string   // Subtitle is the setting (model, sampler, run), set smaller under the title.
	Claim    string   // Claim heads the figure's part of report.md; figures of one claim are adjacent.
	Metric   string   // Metric is the stored metric name on the y axis.
	Axis     Axis     // Axis is the speedup on the x axis.
	Series   []Series // Series are the families, in the group's row order.
	Front    []Point  // Front is the Pareto front ordered by speedup (empty when the metric has no better direction).
	// Custom, when set, is a ready plot (the step_stats diagnostics) drawn instead of a trade-off.
	Custom *plot.Plot
	// Panels, when set, are ready small multiples drawn under the title at their own size.
	Panels *diag.Panels
}

// minFigurePoints is the fewest runs worth a trade-off figure.
const minFigurePoints = 2

// Claims are the headings of report.md's figure parts, in the order the builders add them.
const (
	claimFLOPs   = "Quality vs FLOPs speedup"
	claimLatency = "Quality vs wall-clock speedup"
	claimMemory  = "Quality vs cache memory"
)

func (a Axis) claim() string {
	switch a {
	case LatencyAxis:
		return claimLatency
	case MemoryAxis:
		return claimMemory
	}
	return claimFLOPs
}

// headlineMetrics are the metrics a group's figures plot, one per claim a paper makes: the
// distribution's distance (FID), the conditioning (class accuracy, CLIP) and the fidelity to the
// uncached output (PSNR). The others (IS, sFID, KID, precision, recall, SSIM) move with one of
// these, so a figure of theirs would repeat one; they stay in the table.
var headlineMetrics = map[string]bool{"fid": true, "fid_fmnist": true, "class_acc": true, "clip_score": true, "psnr_vs_none": true}

// plottedMetrics splits a group's metrics into those plotted and those left to the table; a
// group with no headline metric plots all of its own rather than none.
func plottedMetrics(rows []*Row) (plot, tableOnly []string) {
	all := metricNames(rows)
	for _, m := range all {
		if headlineMetrics[m] {
			plot = append(plot, m)
		} else {
			tableOnly = append(tableOnly, m)
		}
	}
	if len(plot) == 0 {
		return all, nil
	}
	return plot, tableOnly
}

// NewFigures builds a group's figures, one part per claim: each headline metric against the
// FLOPs speedup, then against the wall-clock speedup, then the first one against the caches'
// memory. A figure with fewer than two plottable runs is skipped; skipped says which and why,
// and names the metrics left to the table. prefix makes the names unique across groups.
func NewFigures(g *Group, prefix string) (figs []Figure, skipped []string) {
	metrics, tableOnly := plottedMetrics(g.Rows)
	if len(tableOnly) > 0 {
		names := make([]string, len(tableOnly))
		for i, m := range tableOnly {
			col, _ := groupMetricColumn(g.Rows, m)
			names[i] = col.Name
		}
		skipped = append(skipped, strings.Join(names, ", ")+": in the table only; a figure of each would repeat another's claim.")
	}
	colors := map[string]int{}
	for _, r := range g.Rows {
		if _, ok := colors[r.Method]; !ok {
			colors[r.Method] = len(colors)
		}
	}
	for _, axis := range axesOf(g) {
		for mi, m := range metrics {
			if axis == MemoryAxis && mi > 0 {
				break
			}
			f := Figure{Name: fileStem(prefix + "-" + m + "-vs-" + axis.String()), Metric: m, Axis: axis, Claim: axis.claim()}
			col, _ := groupMetricColumn(g.Rows, m)
			f.Title = col.Name + " vs " + strings.TrimSuffix(axis.label(), " (×)")
			f.Subtitle = g.Title
			var all []Point
			index := map[string]int{}
			for _, r := range g.Rows {
				s, q := axis.speedup(r), r.Metrics[m]
				if _, ok := r.Metrics[m]; !ok || !s.Known || !finite(s.V) || !finite(q.Value) {
					continue
				}
				if strings.HasSuffix(m, "_vs_none") && r.Method == "none" {
					continue // the reference itself: its capped PSNR (100) would squash every other point
				}
				p := Point{Speedup: s.V, Quality: q.Value, Row: r}
				i, ok := index[r.Method]
				if !ok {
					i = len(f.Series)
					index[r.Method] = i
					f.Series = append(f.Series, Series{Method: r.Method, Color: colors[r.Method]})
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

	legendGap      = 10            // points between the axes (tick labels included) and the legend column
	figureMargin   = 6             // points kept clear at the figure's right edge and either side of the title
	legendFontSize = 9             // points
	maxLegendText  = 1.9 * vg.Inch // wide enough for a method and the parameter or two its runs differ in

	subtitleFontSize = 9    // points: the setting is context, the title says what is plotted
	titlePadding     = 5    // points between the title (and subtitle) and the axes, as plot.New has it
	subtitleGap      = 2    // points between the title and the subtitle
	speedupMargin    = 0.05 // the share of the x range left empty right of the fastest run
)

var (
	frontColor    = color.RGBA{A: 255}
	subtitleColor = color.Gray{Y: 70}
	baselineColor = color.Gray{Y: 110}
)

// chart is a trade-off figure ready to lay out and draw: the plot holds the title, the axes
// and the data; the legend is kept apart, for a column right of the axes where no point can be.
type chart struct {
	plot     *plot.Plot
	legend   plot.Legend     // drawn by draw in the column, never by plot.Draw (plot.Legend stays empty)
	labels   []string        // labels are the legend's entries, as drawn
	title    string          // title is the figure's title before fit wraps it to the width
	subtitle string          // subtitle is the setting, wrapped by fit in the smaller subtitle font
	yLabel   string          // yLabel is the y axis label before fit wraps it to the height
	baseline []*plotter.Line // baseline marks 1×: a vertical line, and the baseline run's quality if one run is the baseline
}

// layout is where a chart's parts lie on its canvas.
type layout struct {
	subtitle string       // subtitle is the wrapped subtitle, drawn under the title
	plot     draw.Canvas  // plot is the title, the axes and the data: the canvas less the legend column
	data     draw.Canvas  // data is the area the points are drawn in, inside plot
	legend   vg.Rectangle // legend is the legend's box, right of plot
}

// chart builds the trade-off plot of the figure.
func (f Figure) chart() (*chart, error) {
	p := plot.New()
	ch := &chart{plot: p, legend: plot.NewLegend(), title: f.Title, subtitle: f.Subtitle}
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
	perSetting := len(legendSettings(f)) <= maxLegendEntries
	shape := 0
	for i, s := range f.Series {
		var thumbs []plot.Thumbnailer
		// A line reads as a trade-off curve along one knob; runs that differ in several
		// parameters are not points of one curve (it would zigzag), so they stay unjoined.
		if len(s.Points) > 1 && varyingParams(s) <= 1 {
			ln, err := plotter.NewLine(xysOf(s.Points))
			if err != nil {
				return nil, fmt.Errorf("figure %s, %s: %w", f.Name, s.Method, err)
			}
			ln.LineStyle.Color = plotutil.Color(s.Color)
			ln.LineStyle.Width = vg.Points(1.5)
			p.Add(ln)
			thumbs = append(thumbs, ln)
		}
		sets := []setting{{label: s.Method, points: s.Points}}
		if perSetting {
			sets = settingsOf(s)
		}
		for _, set := range sets {
			sc, err := plotter.NewScatter(xysOf(set.points))
			if err != nil {
				return nil, fmt.Errorf("figure %s, %s: %w", f.Name, s.Method, err)
			}
			sc.GlyphStyle.Color = plotutil.Color(s.Color)
			sc.GlyphStyle.Radius = vg.Points(4)
			if perSetting {
				// The family keeps its colour; the shape tells its settings apart.
				sc.GlyphStyle.Shape = plotutil.Shape(shape)
				shape++
				p.Add(sc)
				addLegend(set.label, sc)
				continue
			}
			sc.GlyphStyle.Shape = plotutil.Shape(i)
			p.Add(sc)
			addLegend(set.label, append(thumbs, sc)...)
		}
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

// maxLegendEntries is the most runs the legend names one by one; past it the legend names the
// families, so that it still fits the figure's height.
const maxLegendEntries = 16

// setting is a legend entry: the runs of one family with one setting.
type setting struct {
	label  string
	points []Point
}

// settingsOf splits a family's points by setting, in speedup order of their first run. A label
// names the method and the parameters that differ within the family: what the others share
// is in the table, and the label must fit the legend.
// varyingParams counts the parameters whose value differs between a family's runs.
func varyingParams(s Series) int {
	values := map[string]map[string]bool{}
	for _, pt := range s.Points {
		if pt.Row == nil {
			continue
		}
		for _, kv := range strings.Split(pt.Row.Setting, ", ") {
			k, v, _ := strings.Cut(kv, "=")
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v] = true
		}
	}
	n := 0
	for _, vs := range values {
		if len(vs) > 1 {
			n++
		}
	}
	return n
}

func settingsOf(s Series) []setting {
	params := make([][]string, len(s.Points))
	values := map[string]map[string]bool{} // parameter name → values seen in the family
	for i, pt := range s.Points {
		if pt.Row == nil || pt.Row.Setting == "" {
			continue
		}
		params[i] = strings.Split(pt.Row.Setting, ", ")
		for _, kv := range params[i] {
			k, v, _ := strings.Cut(kv, "=")
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v] = true
		}
	}
	varying := func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		n := 0
		for _, ps := range params {
			for _, x := range ps {
				if kx, _, _ := strings.Cut(x, "="); kx == k {
					n++
					break
				}
			}
		}
		return len(values[k]) > 1 || n < len(s.Points)
	}
	distinct := map[string]bool{}
	for _, pt := range s.Points {
		if pt.Row != nil {
			distinct[pt.Row.Setting] = true
		}
	}
	var out []setting
	index := map[string]int{}
	for i, pt := range s.Points {
		var shown []string
		for _, kv := range params[i] {
			if len(distinct) == 1 || varying(kv) {
				shown = append(shown, kv)
			}
		}
		label := strings.TrimSpace(s.Method + " " + strings.Join(shown, ", "))
		j, ok := index[label]
		if !ok {
			j = len(out)
			index[label] = j
			out = append(out, setting{label: label})
		}
		out[j].points = append(out[j].points, pt)
	}
	return out
}

// legendSettings are the figure's legend entries when each setting has its own.
func legendSettings(f Figure) []setting {
	var out []setting
	for _, s := range f.Series {
		out = append(out, settingsOf(s)...)
	}
	return out
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
	sub := setHeader(p, ch.title, ch.subtitle, pc.Size().X-2*vg.Points(figureMargin))
	p.Y.Label.Text = ch.yLabel
	plotC := draw.Canvas{Rectangle: pc}
	data := p.DataCanvas(plotC)
	if yl := wrapText(p.Y.Label.TextStyle, ch.yLabel, data.Size().Y); yl != ch.yLabel {
		p.Y.Label.Text = yl // a wider y axis leaves the data area's height as it is
		data = p.DataCanvas(plotC)
	}
	left := pc.Max.X + vg.Points(legendGap)
	return layout{
		subtitle: sub,
		plot:     plotC,
		data:     data,
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
	drawSubtitle(l.plot, ch.plot, l.subtitle)
	// plot.Legend draws its first entry one descent below the top of its canvas.
	lc := draw.Canvas{Canvas: c.Canvas, Rectangle: l.legend}
	lc.Max.Y += ch.legend.TextStyle.FontExtents().Descent
	ch.legend.Draw(lc)
	return l
}

// Draw draws the figure on c: a trade-off with its legend right of the axes, or the custom plot
// with its title wrapped to the width.
func (f Figure) Draw(c draw.Canvas) error {
	if f.Panels != nil {
		p, sub := f.panelsHeader(c.Size().X)
		drawTitle(c, p)
		drawSubtitle(c, p, sub)
		rest := c
		rest.Max.Y -= headerHeight(p)
		f.Panels.Draw(rest)
		return nil
	}
	if f.Custom != nil {
		p := *f.Custom // a copy: the figure's plot keeps its title as given
		sub := setHeader(&p, p.Title.Text, f.Subtitle, c.Size().X-2*vg.Points(figureMargin))
		p.Draw(c)
		drawSubtitle(c, &p, sub)
		return nil
	}
	ch, err := f.chart()
	if err != nil {
		return err
	}
	ch.draw(c)
	return nil
}

// panelsHeader is a plot with nothing but the panels' title, laid out by setHeader as every
// other figure's, and the wrapped subtitle.
func (f Figure) panelsHeader(width vg.Length) (*plot.Plot, string) {
	p := plot.New()
	sub := setHeader(p, f.Title, f.Subtitle, width-2*vg.Points(figureMargin))
	return p, sub
}

// headerHeight is the room p's title and the padding under it (the subtitle's room) take.
func headerHeight(p *plot.Plot) vg.Length {
	return p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
}

// drawTitle draws p's title at the top of c, as plot.Draw does.
func drawTitle(c draw.Canvas, p *plot.Plot) {
	c.FillText(p.Title.TextStyle, vg.Point{X: c.Center().X, Y: c.Max.Y + p.Title.TextStyle.FontExtents().Descent}, p.Title.Text)
}

// size is the canvas the figure is rendered on: the panels' own under their header, else the
// reports' figure size.
func (f Figure) size() (w, h vg.Length) {
	if f.Panels == nil {
		return figureWidth, figureHeight
	}
	w, h = f.Panels.Size()
	p, _ := f.panelsHeader(w)
	return w, h + headerHeight(p)
}

// subtitleStyle is the subtitle's text: the title's, smaller and grey.
func subtitleStyle(title text.Style) text.Style {
	sty := title
	sty.Font.Size = vg.Points(subtitleFontSize)
	sty.Color = subtitleColor
	return sty
}

// setHeader wraps p's title and the subtitle to width and leaves room for the subtitle between
// the title and the axes (plot.Draw sets the title's padding there); it returns the wrapped
// subtitle for drawSubtitle.
func setHeader(p *plot.Plot, title, subtitle string, width vg.Length) string {
	p.Title.Text = wrapText(p.Title.TextStyle, title, width)
	p.Title.Padding = vg.Points(titlePadding)
	if subtitle == "" {
		return ""
	}
	sty := subtitleStyle(p.Title.TextStyle)
	sub := wrapText(sty, subtitle, width)
	p.Title.Padding += vg.Points(subtitleGap) + sty.Rectangle(sub).Size().Y
	return sub
}

// subtitleBox is where drawSubtitle puts the subtitle on c, the canvas p was drawn on.
func subtitleBox(c draw.Canvas, p *plot.Plot, sub string) vg.Rectangle {
	sty := subtitleStyle(p.Title.TextStyle)
	top := c.Max.Y - vg.Points(subtitleGap)
	if p.Title.Text != "" {
		top -= p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y
	}
	w, h := sty.Width(sub), sty.Rectangle(sub).Size().Y
	return vg.Rectangle{Min: vg.Point{X: c.Center().X - w/2, Y: top - h}, Max: vg.Point{X: c.Center().X + w/2, Y: top}}
}

// drawSubtitle draws the subtitle setHeader made room for, centred under the title.
func drawSubtitle(c draw.Canvas, p *plot.Plot, sub string) {
	if sub == "" {
		return
	}
	sty := subtitleStyle(p.Title.TextStyle)
	box := subtitleBox(c, p, sub)
	// As plot.Draw sets the title: a top-aligned text drawn one descent above the box's top.
	c.FillText(sty, vg.Point{X: c.Center().X, Y: box.Max.Y + sty.FontExtents().Descent}, sub)
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
	width, height := f.size()
	c, err := draw.NewFormattedCanvas(width, height, format)
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
