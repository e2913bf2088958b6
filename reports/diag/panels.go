package diag

import (
	"cmp"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Small-multiples geometry: four panels a row on a figure about 1000 px wide at 96 dpi, so that
// 9-point text stays legible when the PNG is shown at its own size.
const (
	panelCols       = 4
	panelsWidth     = 10.4 * vg.Inch
	panelRowHeight  = 2.4 * vg.Inch
	panelTitleSize  = 11   // points
	panelLabelSize  = 10   // points: axis labels
	panelTickSize   = 9    // points
	panelLegendSize = 9    // points
	legendThumb     = 16   // points: the width of a legend entry's line sample
	legendEntryGap  = 8    // points between two legend entries on one line
	legendPad       = 3    // points between the panel title, the legend band and the data area
	panelGap        = 14   // points between two panels
	yHeadroom       = 1.04 // the y range's top over the largest value, so the top line clears the frame
)

// referenceColor draws method none's curve in every panel: context, not a competitor.
var referenceColor = color.Gray{Y: 150}

// Panels is a small-multiples figure: one panel per method, all on the same x and y ranges.
type Panels struct {
	Plots   []*plot.Plot // Plots are the panels in reading order, each titled by its method.
	Omitted []string     // Omitted are the labels of the runs without a point, so without a line.

	legends [][]legendEntry // legends[i] are Plots[i]'s entries, drawn above its data area
}

// legendEntry is one line of a panel and its label.
type legendEntry struct {
	label string
	line  draw.LineStyle
}

// panelLayout is where Draw put one panel: its tile, data area and legend band.
type panelLayout struct {
	tile, data, legend vg.Rectangle
	items              []legendItem
}

// legendItem is one entry placed by layoutLegend: its line sample starts at at, its text follows.
type legendItem struct {
	entry legendEntry
	text  string // the label, shortened with an ellipsis when the line cannot hold it
	at    vg.Point
	box   vg.Rectangle
}

// Rows is the number of panel rows.
func (ps *Panels) Rows() int { return (len(ps.Plots) + panelCols - 1) / panelCols }

// Cols is the number of panel columns.
func (ps *Panels) Cols() int { return min(len(ps.Plots), panelCols) }

// Size is the canvas the panels want, the figure's title not included.
func (ps *Panels) Size() (w, h vg.Length) {
	return panelsWidth, vg.Length(ps.Rows()) * panelRowHeight
}

// Draw tiles the panels on c, each legend in a band between its panel's title and data area.
func (ps *Panels) Draw(c draw.Canvas) { ps.draw(c) }

func (ps *Panels) draw(c draw.Canvas) []panelLayout {
	rows, cols := ps.Rows(), ps.Cols()
	if rows == 0 {
		return nil
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(panelGap), PadY: vg.Points(panelGap), PadRight: vg.Points(4)}
	// Copies: Draw sets the title padding for the legend band and may run more than once.
	grid := make([][]*plot.Plot, rows)
	for j := range grid {
		grid[j] = make([]*plot.Plot, cols)
	}
	for i, p := range ps.Plots {
		cp := *p
		cp.Title.Padding = vg.Points(legendPad)
		grid[i/cols][i%cols] = &cp
	}
	sty := legendStyle()
	lineH := sty.Rectangle("Xg").Size().Y
	// The band's height depends on the data areas' widths, which do not depend on it: lay out
	// once without it to learn the widths, then with the tallest legend's band in every panel
	// so that titles line up along a row.
	tc := plot.Align(grid, tiles, c)
	lines := 0
	for i := range ps.Plots {
		p, t := grid[i/cols][i%cols], tc[i/cols][i%cols]
		lines = max(lines, legendLines(layoutLegend(ps.legends[i], sty, legendWidth(p, t), vg.Point{})))
	}
	band := vg.Length(lines) * lineH
	for i := range ps.Plots {
		grid[i/cols][i%cols].Title.Padding = 2*vg.Points(legendPad) + band
	}
	tc = plot.Align(grid, tiles, c)
	out := make([]panelLayout, len(ps.Plots))
	for i := range ps.Plots {
		p, t := grid[i/cols][i%cols], tc[i/cols][i%cols]
		data := p.DataCanvas(t)
		// plot.Draw centres the title on the tile, tick labels included; the title is drawn
		// instead over the data area's left edge, where the legend under it starts.
		// A blank one-line title keeps its room (its height is the font's, whatever the text).
		name, title := p.Title.Text, p.Title.TextStyle
		p.Title.Text = " "
		p.Draw(t)
		title.XAlign = draw.XLeft
		t.FillText(title, vg.Point{X: data.Min.X, Y: t.Max.Y + title.FontExtents().Descent}, name)
		top := t.Max.Y - title.Rectangle(name).Size().Y - vg.Points(legendPad)
		items := layoutLegend(ps.legends[i], sty, legendWidth(p, t), vg.Point{X: data.Min.X, Y: top})
		drawLegend(t, sty, items)
		out[i] = panelLayout{tile: t.Rectangle, data: data.Rectangle, items: items,
			legend: vg.Rectangle{Min: vg.Point{X: data.Min.X, Y: top - band}, Max: vg.Point{X: t.Max.X, Y: top}}}
	}
	return out
}

// legendStyle is the text of the panels' legends.
func legendStyle() text.Style {
	sty := plot.New().Legend.TextStyle
	sty.Font.Size = vg.Points(panelLegendSize)
	return sty
}

// legendWidth is the room a panel's legend has: from its data area's left edge to its tile's right.
func legendWidth(p *plot.Plot, t draw.Canvas) vg.Length {
	return t.Max.X - p.DataCanvas(t).Min.X
}

// layoutLegend flows the entries left to right from the top-left corner at, starting a line when
// the next entry does not fit in width; a label wider than a line is shortened.
func layoutLegend(entries []legendEntry, sty text.Style, width vg.Length, at vg.Point) []legendItem {
	lineH := sty.Rectangle("Xg").Size().Y
	thumb := vg.Points(legendThumb) + sty.Width(" ")
	var out []legendItem
	x, line := vg.Length(0), 0
	for _, e := range entries {
		label := shorten(sty, e.label, width-thumb)
		w := thumb + sty.Width(label)
		if x > 0 && x+w > width {
			x, line = 0, line+1
		}
		y := at.Y - vg.Length(line)*lineH
		out = append(out, legendItem{entry: e, text: label, at: vg.Point{X: at.X + x, Y: y},
			box: vg.Rectangle{Min: vg.Point{X: at.X + x, Y: y - lineH}, Max: vg.Point{X: at.X + x + w, Y: y}}})
		x += w + vg.Points(legendEntryGap)
	}
	return out
}

// legendLines is the number of lines layoutLegend used.
func legendLines(items []legendItem) int {
	n := 0
	for i, it := range items {
		if i == 0 || it.at.Y != items[i-1].at.Y {
			n++
		}
	}
	return n
}

func drawLegend(c draw.Canvas, sty text.Style, items []legendItem) {
	for _, it := range items {
		mid := (it.box.Min.Y + it.box.Max.Y) / 2
		c.StrokeLine2(it.entry.line, it.box.Min.X, mid, it.box.Min.X+vg.Points(legendThumb), mid)
		// FillText puts the baseline at the point: one descent above the line's bottom.
		c.FillText(sty, vg.Point{X: it.box.Min.X + vg.Points(legendThumb) + sty.Width(" "), Y: it.box.Min.Y + sty.FontExtents().Descent}, it.text)
	}
}

// shorten cuts s with an ellipsis until it is no wider than width in sty.
func shorten(sty text.Style, s string, width vg.Length) string {
	if sty.Width(s) <= width {
		return s
	}
	rs := []rune(s)
	for len(rs) > 1 && sty.Width(string(rs)+"…") > width {
		rs = rs[:len(rs)-1]
	}
	return strings.TrimRight(string(rs), " ,") + "…"
}

// curve is one run's points on a panel figure.
type curve struct {
	label string
	pts   plotter.XYs
}

// methodOf is a run label's method: the word before the first space ("toca N=3" → toca).
func methodOf(label string) string {
	m, _, _ := strings.Cut(label, " ")
	return m
}

// newPanels groups the curves into one panel per method, in order of first appearance, on the
// ranges 0..the largest call and 0..the largest value of all of them; none's curve is a grey
// reference in every other panel, and a panel of its own only when it is alone.
func newPanels(curves []curve, yLabel string) (*Panels, error) {
	var ref *curve
	var methods []string
	byMethod := map[string][]curve{}
	xMax, yMax := 0.0, 0.0
	for i, c := range curves {
		for _, pt := range c.pts {
			xMax, yMax = max(xMax, pt.X), max(yMax, pt.Y)
		}
		m := methodOf(c.label)
		if m == "none" && ref == nil {
			ref = &curves[i]
			continue
		}
		if byMethod[m] == nil {
			methods = append(methods, m)
		}
		byMethod[m] = append(byMethod[m], c)
	}
	if len(methods) == 0 && ref != nil {
		methods, byMethod["none"], ref = []string{"none"}, []curve{*ref}, nil
	}
	if yMax == 0 {
		yMax = 1 // all zero: a flat line on a visible range
	}
	ps := &Panels{}
	for i, m := range methods {
		p := plot.New()
		p.Title.Text = m
		p.Title.TextStyle.Font.Size = vg.Points(panelTitleSize)
		for _, ax := range []*plot.Axis{&p.X, &p.Y} {
			ax.Label.TextStyle.Font.Size = vg.Points(panelLabelSize)
			ax.Tick.Label.Font.Size = vg.Points(panelTickSize)
		}
		p.X.Min, p.X.Max = 0, max(xMax, 1)
		p.Y.Min, p.Y.Max = 0, yMax*yHeadroom
		// Axis labels on the outer panels only: the ranges are shared.
		if i%panelCols == 0 {
			p.Y.Label.Text = yLabel
		}
		if i+panelCols >= len(methods) {
			p.X.Label.Text = "model call (0 = pure noise)"
		}
		p.Add(plotter.NewGrid())
		var entries []legendEntry
		var refEntry []legendEntry
		if ref != nil {
			// Added first, so that the method's lines are drawn over it.
			l, err := plotter.NewLine(ref.pts)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = referenceColor, vg.Points(1.2)
			p.Add(l)
			refEntry = []legendEntry{{label: "none", line: l.LineStyle}}
		}
		for j, c := range byMethod[m] {
			l, err := plotter.NewLine(c.pts)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width, l.Dashes = palette(j), vg.Points(1.5), dashes(j)
			p.Add(l)
			_, setting, _ := strings.Cut(c.label, " ")
			entries = append(entries, legendEntry{label: cmp.Or(setting, m), line: l.LineStyle})
		}
		ps.Plots, ps.legends = append(ps.Plots, p), append(ps.legends, append(entries, refEntry...))
	}
	return ps, nil
}

// dashes tells a panel's lines apart without colour (print, colour blindness).
func dashes(i int) []vg.Length {
	switch i % 3 {
	case 1:
		return []vg.Length{vg.Points(5), vg.Points(2)}
	case 2:
		return []vg.Length{vg.Points(1.5), vg.Points(1.5)}
	}
	return nil
}
