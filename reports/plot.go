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
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Axis is the speedup a figure plots quality against.
type Axis int

const (
	FLOPsAxis   Axis = iota // FLOPsAxis is the FLOPs speedup (what the papers' headlines quote).
	LatencyAxis             // LatencyAxis is the measured wall-clock speedup.
)

// String names the axis in file names.
func (a Axis) String() string {
	if a == LatencyAxis {
		return "latency"
	}
	return "flops"
}

func (a Axis) label() string {
	if a == LatencyAxis {
		return "wall-clock speedup (×)"
	}
	return "FLOPs speedup (×)"
}

func (a Axis) speedup(r *Row) Value {
	if a == LatencyAxis {
		return r.LatencySpeedup
	}
	return r.FLOPsSpeedup
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
		for _, axis := range []Axis{FLOPsAxis, LatencyAxis} {
			f := Figure{Name: fileStem(prefix + "-" + m + "-vs-" + axis.String()), Metric: m, Axis: axis}
			col := metricColumnOf(m)
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
			f.Front = ParetoFront(all, col.Better)
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

// Figure geometry: wide enough for a legend beside half a dozen families.
const (
	figureWidth  = 6 * vg.Inch
	figureHeight = 4 * vg.Inch
)

var frontColor = color.RGBA{A: 255}

// Plot draws the figure with gonum/plot.
func (f Figure) Plot() (*plot.Plot, error) {
	if f.Custom != nil {
		return f.Custom, nil
	}
	p := plot.New()
	p.Title.Text = f.Title
	p.X.Label.Text = f.Axis.label()
	col := metricColumnOf(f.Metric)
	p.Y.Label.Text = col.Name
	switch col.Better {
	case LowerIsBetter:
		p.Y.Label.Text += " (lower is better)"
	case HigherIsBetter:
		p.Y.Label.Text += " (higher is better)"
	}
	// The legend goes where the trade-off leaves room: a lower-is-better metric rises to the
	// right, a higher-is-better one falls, so the top-left or bottom-left corner is empty.
	p.Legend.Left = true
	p.Legend.Top = col.Better != HigherIsBetter
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), vg.Points(-4)
	if !p.Legend.Top {
		p.Legend.YOffs = vg.Points(4)
	}
	padAxes(p, f)
	p.Add(plotter.NewGrid())

	// The front goes first so the families' lines stay visible on top of it; its rings last.
	var ring *plotter.Scatter
	var frontLegend []plot.Thumbnailer
	if len(f.Front) > 0 {
		xys := xysOf(f.Front)
		var err error
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
			p.Legend.Add(s.Method, sc)
			continue
		}
		ln, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("figure %s, %s: %w", f.Name, s.Method, err)
		}
		ln.LineStyle.Color = plotutil.Color(i)
		ln.LineStyle.Width = vg.Points(1.5)
		p.Add(ln, sc)
		p.Legend.Add(s.Method, ln, sc)
	}
	if ring != nil {
		p.Add(ring)
		p.Legend.Add("Pareto front", frontLegend...)
	}
	return p, nil
}

// padAxes widens the axes by a margin around the data so no point sits on the frame.
func padAxes(p *plot.Plot, f Figure) {
	first := true
	var x0, x1, y0, y1 float64
	for _, s := range f.Series {
		for _, pt := range s.Points {
			if first {
				x0, x1, y0, y1, first = pt.Speedup, pt.Speedup, pt.Quality, pt.Quality, false
			}
			x0, x1 = math.Min(x0, pt.Speedup), math.Max(x1, pt.Speedup)
			y0, y1 = math.Min(y0, pt.Quality), math.Max(y1, pt.Quality)
		}
	}
	if first {
		return
	}
	pad := func(lo, hi float64) (float64, float64) {
		m := 0.08 * (hi - lo)
		if m == 0 {
			m = 0.05*math.Abs(lo) + 0.05
		}
		return lo - m, hi + m
	}
	p.X.Min, p.X.Max = pad(x0, x1)
	p.Y.Min, p.Y.Max = pad(y0, y1)
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
	p, err := f.Plot()
	if err != nil {
		return err
	}
	wt, err := p.WriterTo(figureWidth, figureHeight, format)
	if err != nil {
		return fmt.Errorf("figure %s: %w", f.Name, err)
	}
	// Render into memory first so a failed figure leaves no half-written file behind.
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
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
