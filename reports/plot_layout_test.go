package reports

import (
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// figureArea is the canvas the reports render figures on.
var figureArea = vg.Rectangle{Max: vg.Point{X: figureWidth, Y: figureHeight}}

// family is one method family of a synthetic figure: its (speedup, quality) points.
type family struct {
	method string // "method|setting" gives the family's runs a setting
	points [][2]float64
}

// testFigure builds a trade-off figure from families, with its Pareto front, as NewFigures would.
func testFigure(title, metric string, axis Axis, families ...family) Figure {
	type fam struct {
		family
		setting string
	}
	var fams []fam
	for _, f := range families {
		fams = append(fams, fam{family: f})
	}
	f := Figure{Name: fileStem(title + "-" + metric), Title: title, Metric: metric, Axis: axis}
	var all []Point
	for _, fam := range fams {
		fam.method, fam.setting, _ = strings.Cut(fam.method, "|")
		if n := len(f.Series); n > 0 && f.Series[n-1].Method == fam.method { // another setting of the family
			for _, xy := range fam.points {
				p := Point{Speedup: xy[0], Quality: xy[1], Row: &Row{Method: fam.method, Setting: fam.setting}}
				f.Series[n-1].Points = append(f.Series[n-1].Points, p)
				all = append(all, p)
			}
			sortPoints(f.Series[n-1].Points)
			continue
		}
		s := Series{Method: fam.method}
		for _, xy := range fam.points {
			p := Point{Speedup: xy[0], Quality: xy[1], Row: &Row{Method: fam.method, Setting: fam.setting}}
			s.Points = append(s.Points, p)
			all = append(all, p)
		}
		sortPoints(s.Points)
		f.Series = append(f.Series, s)
	}
	f.Front = ParetoFront(all, metricColumnOf(metric).Better)
	return f
}

const longGroupTitle = "PixArt-Sigma-XL-2-1024-MS (fine-tuned), dpm-solver++ multistep, 50 steps, cfg 4.5, seed 0, weights 0123456789abcdef"

// layoutFigures are the figures the layout tests check: the fixture's and synthetic ones that
// put points in every corner, below 1×, far from it, with many families and long names.
func layoutFigures(t *testing.T) []Figure {
	t.Helper()
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	figs, _ := NewFigures(d.Groups[0], "1-dit")
	if len(figs) == 0 {
		t.Fatal("the fixture has no figures")
	}
	corners := []family{
		{"none", [][2]float64{{1, 2.4}}},
		{"fora", [][2]float64{{1.2, 9.5}, {4.8, 9.9}, {4.9, 2.1}}},
		{"toca", [][2]float64{{2, 5}, {3, 4}}},
	}
	var many []family
	for i := range 9 {
		many = append(many, family{method: strings.Repeat("x", i) + "method-" + string(rune('a'+i)),
			points: [][2]float64{{1 + 0.3*float64(i), 200 + float64(i*i)}, {1.1 + 0.3*float64(i), 190 + float64(i)}}})
	}
	// One family, several settings: each gets its own legend entry, named by what differs.
	settings := []family{{"none", [][2]float64{{1, 0.79}}}}
	for i, st := range []string{"N=3, mode=faithful, ratio=0, scheduler=ToCa", "N=3, mode=faithful, ratio=0.3, scheduler=ToCa", "N=5, mode=faithful, ratio=0.3, scheduler=ToCa"} {
		settings = append(settings, family{method: "toca-pixart|" + st, points: [][2]float64{{2 + 0.4*float64(i), 0.8 + 0.01*float64(i)}}})
	}
	many = append(many, family{"an-extremely-long-method-family-name-nobody-would-use", [][2]float64{{2.2, 230}}})
	return append(figs,
		withSubtitle(testFigure("FID vs FLOPs speedup", "fid", FLOPsAxis, corners...), longGroupTitle),
		withSubtitle(testFigure("IS vs wall-clock speedup", "is", LatencyAxis, many...), longGroupTitle),
		withSubtitle(testFigure("class accuracy vs FLOPs speedup", "class_acc", FLOPsAxis, settings...), longGroupTitle),
		testFigure("slower than baseline", "fid", LatencyAxis,
			family{"none", [][2]float64{{1, 3}}}, family{"fora", [][2]float64{{0.62, 3.1}, {0.9, 3.2}, {1.8, 4}}}),
		testFigure("no baseline run\nDiT-XL/2, ddim, 20 steps", "clip_score", FLOPsAxis,
			family{"duca", [][2]float64{{1.7, 16.4}}}, family{"fora", [][2]float64{{2.4, 16.2}, {3.1, 15.9}}}),
		testFigure("all at 1×", "sfid", FLOPsAxis,
			family{"none", [][2]float64{{1, 4.4}}}, family{"steps", [][2]float64{{1, 4.9}}}),
		testFigure("averyveryveryveryveryveryveryverylongmodelnamewithoutanyspaceatall-1024px-dpm-solver-multistep-xl", "recall", FLOPsAxis,
			family{"none", [][2]float64{{1, 0.59}}}, family{"fora", [][2]float64{{3, 0.55}}}),
	)
}

func withSubtitle(f Figure, sub string) Figure {
	f.Subtitle = sub
	return f
}

// A family's runs with different settings get one legend entry each, named by the method and
// the parameters that differ, with a shape of their own; the title stays short.
func TestFigureLegendPerSetting(t *testing.T) {
	var f Figure
	for _, fig := range layoutFigures(t) {
		if fig.Title == "class accuracy vs FLOPs speedup" {
			f = fig
		}
	}
	ch, _ := fitFigure(t, f)
	want := []string{"none", "toca-pixart N=3, ratio=0", "toca-pixart N=3, ratio=0.3", "toca-pixart N=5, ratio=0.3", "Pareto front", "baseline (1×)"}
	if strings.Join(ch.labels, "|") != strings.Join(want, "|") {
		t.Errorf("legend %q, want %q", ch.labels, want)
	}
	if strings.Contains(f.Title, "\n") || strings.Contains(ch.plot.Title.Text, longGroupTitle) {
		t.Errorf("title %q carries the setting", ch.plot.Title.Text)
	}
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	figs, _ := NewFigures(d.Groups[0], "1-dit")
	for _, fig := range figs {
		if strings.Contains(fig.Title, d.Groups[0].Title) || fig.Subtitle != d.Groups[0].Title {
			t.Errorf("%s: title %q, subtitle %q: want the group's title in the subtitle only", fig.Name, fig.Title, fig.Subtitle)
		}
	}
}

func fitFigure(t *testing.T, f Figure) (*chart, layout) {
	t.Helper()
	ch, err := f.chart()
	if err != nil {
		t.Fatal(err)
	}
	return ch, ch.fit(figureArea)
}

// The x axis starts at 1× (or left of a slower run, 1× still shown), has 1× as a labelled tick
// and a baseline line there, and leaves a margin right of the fastest run.
func TestFigureSpeedupAxis(t *testing.T) {
	for _, f := range layoutFigures(t) {
		ch, l := fitFigure(t, f)
		p := ch.plot
		x0, x1, _, _, _ := f.extent()
		span := p.X.Max - p.X.Min
		if x0 >= 1 && p.X.Min != 1 {
			t.Errorf("%s: x axis from %g, want 1 (the slowest run is %g×)", f.Name, p.X.Min, x0)
		}
		if x0 < 1 && !(p.X.Min < x0) {
			t.Errorf("%s: x axis from %g, want left of the slowest run %g×", f.Name, p.X.Min, x0)
		}
		if p.X.Min > 1 || p.X.Max <= 1 {
			t.Errorf("%s: x axis %g..%g leaves out 1×", f.Name, p.X.Min, p.X.Max)
		}
		if x1 == p.X.Min { // every run at the left end: any range right of it will do
			if p.X.Max <= x1 {
				t.Errorf("%s: x axis %g..%g", f.Name, p.X.Min, p.X.Max)
			}
		} else if m := (p.X.Max - math.Max(x1, 1)) / span; m < 0.02 || m > 0.1 {
			t.Errorf("%s: x axis ends at %g, fastest run %g×: margin %.3g of the range, want 0.02..0.1", f.Name, p.X.Max, x1, m)
		}
		// On the canvas: the fastest run's marker is clear of the frame.
		tx, _ := p.Transforms(&l.data)
		if right := tx(x1) + vg.Points(7); right > l.data.Max.X {
			t.Errorf("%s: the fastest run's marker reaches %v, the data area ends at %v", f.Name, right, l.data.Max.X)
		}
		one := false
		for _, tk := range p.X.Tick.Marker.Ticks(p.X.Min, p.X.Max) {
			one = one || (tk.Value == 1 && tk.Label != "")
		}
		if !one {
			t.Errorf("%s: no labelled tick at 1×", f.Name)
		}
		want := "FLOPs speedup (×)"
		if f.Axis == LatencyAxis {
			want = "wall-clock speedup (×)"
		}
		if p.X.Label.Text != want {
			t.Errorf("%s: x label %q, want %q", f.Name, p.X.Label.Text, want)
		}
		// The baseline marker: a line at x = 1 across the y range, named in the legend.
		if len(ch.baseline) == 0 {
			t.Fatalf("%s: no baseline marker", f.Name)
		}
		v := ch.baseline[0].XYs
		if len(v) != 2 || v[0].X != 1 || v[1].X != 1 || math.Min(v[0].Y, v[1].Y) > p.Y.Min || math.Max(v[0].Y, v[1].Y) < p.Y.Max {
			t.Errorf("%s: baseline marker %v, want x = 1 across %g..%g", f.Name, v, p.Y.Min, p.Y.Max)
		}
		if !containsString(ch.labels, "baseline (1×)") {
			t.Errorf("%s: legend %q lacks the baseline", f.Name, ch.labels)
		}
	}
}

// The legend has a column right of the data area: no marker lies under it, and it is on the figure.
func TestFigureLegendOutsideData(t *testing.T) {
	for _, f := range layoutFigures(t) {
		ch, l := fitFigure(t, f)
		lg := l.legend
		if lg.Min.X < l.data.Max.X || lg.Min.X < l.plot.Max.X {
			t.Errorf("%s: legend %v overlaps the data area %v or the axes %v", f.Name, lg, l.data.Rectangle, l.plot.Rectangle)
		}
		if lg.Min.X < figureArea.Min.X || lg.Max.X > figureArea.Max.X || lg.Min.Y < figureArea.Min.Y || lg.Max.Y > figureArea.Max.Y {
			t.Errorf("%s: legend %v is not within the figure %v", f.Name, lg, figureArea)
		}
		if l.data.Size().X < figureWidth/2 {
			t.Errorf("%s: the legend leaves the data area %v wide", f.Name, l.data.Size().X)
		}
		tx, ty := ch.plot.Transforms(&l.data)
		const r = 7 // the largest marker's radius, points
		for _, s := range f.Series {
			for _, pt := range s.Points {
				x, y := tx(pt.Speedup), ty(pt.Quality)
				if x+r > lg.Min.X && x-r < lg.Max.X && y+r > lg.Min.Y && y-r < lg.Max.Y {
					t.Errorf("%s: %s point (%g, %g) at (%v, %v) is under the legend %v", f.Name, s.Method, pt.Speedup, pt.Quality, x, y, lg)
				}
			}
		}
		for _, label := range ch.labels {
			if w := ch.legend.TextStyle.Width(label); w > maxLegendText {
				t.Errorf("%s: legend entry %q is %v wide, more than %v", f.Name, label, w, maxLegendText)
			}
		}
	}
}

// The legend is drawn where the layout puts it: ink inside its box, none in the column below it.
func TestFigureLegendDrawn(t *testing.T) {
	for _, f := range layoutFigures(t)[:2] {
		ch, err := f.chart()
		if err != nil {
			t.Fatal(err)
		}
		c := vgimg.New(figureWidth, figureHeight)
		l := ch.draw(draw.New(c))
		img := c.Image()
		if n := inkIn(img, c.DPI(), l.legend); n < 100 {
			t.Errorf("%s: %d dark pixels in the legend box %v: the legend is not drawn there", f.Name, n, l.legend)
		}
		// The plot's own legend (plot.Draw puts it inside the axes) is empty.
		blank := vgimg.New(figureWidth, figureHeight)
		ch.plot.Legend.Draw(draw.New(blank))
		if n := inkIn(blank.Image(), blank.DPI(), figureArea); n > 0 {
			t.Errorf("%s: the plot's own legend, drawn inside the axes, has entries (%d dark pixels)", f.Name, n)
		}
		below := vg.Rectangle{Min: vg.Point{X: l.plot.Max.X + 1, Y: 0}, Max: vg.Point{X: figureWidth, Y: l.legend.Min.Y - vg.Points(8)}}
		if n := inkIn(img, c.DPI(), below); n > 0 {
			t.Errorf("%s: %d dark pixels in the legend column below the legend %v", f.Name, n, below)
		}
	}
}

// Titles and the y label fit the figure: each line measured with the plot's font.
func TestFigureTextFits(t *testing.T) {
	for _, f := range layoutFigures(t) {
		ch, l := fitFigure(t, f)
		p := ch.plot
		sty := p.Title.TextStyle
		for _, line := range strings.Split(p.Title.Text, "\n") {
			w := sty.Width(line)
			// plot.Draw centres the title on its canvas.
			if left, right := l.plot.Center().X-w/2, l.plot.Center().X+w/2; w > l.plot.Size().X || left < figureArea.Min.X || right > figureArea.Max.X {
				t.Errorf("%s: title line %q spans %v..%v, the figure %v..%v", f.Name, line, left, right, figureArea.Min.X, figureArea.Max.X)
			}
		}
		// The subtitle (the setting) is wrapped to the figure in its smaller font, lies between
		// the title and the data area, and loses no text.
		if f.Subtitle != "" {
			sub := subtitleStyle(sty)
			if sub.Font.Size >= sty.Font.Size {
				t.Errorf("%s: subtitle font %v, title font %v: want it smaller", f.Name, sub.Font.Size, sty.Font.Size)
			}
			for _, line := range strings.Split(l.subtitle, "\n") {
				if w := sub.Width(line); w > l.plot.Size().X {
					t.Errorf("%s: subtitle line %q is %v wide, the plot %v", f.Name, line, w, l.plot.Size().X)
				}
			}
			box := subtitleBox(l.plot, p, l.subtitle)
			titleBottom := l.plot.Max.Y - sty.Rectangle(p.Title.Text).Size().Y
			if box.Min.X < figureArea.Min.X || box.Max.X > figureArea.Max.X || box.Max.Y > titleBottom || box.Min.Y < l.data.Max.Y {
				t.Errorf("%s: subtitle %v, want under the title (%v) and over the data area (%v), within the figure", f.Name, box, titleBottom, l.data.Max.Y)
			}
			if squash(l.subtitle) != squash(f.Subtitle) {
				t.Errorf("%s: subtitle %q lost text of %q", f.Name, l.subtitle, f.Subtitle)
			}
		}
		if squash(p.Title.Text) != squash(f.Title) {
			t.Errorf("%s: title %q lost text of %q", f.Name, p.Title.Text, f.Title)
		}
		for _, line := range strings.Split(p.Y.Label.Text, "\n") {
			if h := p.Y.Label.TextStyle.Width(line); h > l.data.Size().Y {
				t.Errorf("%s: y label line %q is %v long, the data area %v high", f.Name, line, h, l.data.Size().Y)
			}
		}
		if l.data.Size().Y < figureHeight/2 {
			t.Errorf("%s: the title leaves the data area %v high", f.Name, l.data.Size().Y)
		}
	}
}

func TestWrapText(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	figs, _ := NewFigures(d.Groups[0], "1-dit")
	ch, err := figs[0].chart()
	if err != nil {
		t.Fatal(err)
	}
	sty := ch.plot.Title.TextStyle
	s := "DiT-XL/2, ddim, 50 steps, cfg 1.5, seed 0"
	if got := wrapText(sty, s, sty.Width(s)); got != s {
		t.Errorf("a line that fits: %q", got)
	}
	// Breaks go after commas, not inside "50 steps".
	if got, want := wrapText(sty, s, sty.Width("DiT-XL/2, ddim, 50 steps,")), "DiT-XL/2, ddim, 50 steps,\ncfg 1.5, seed 0"; got != want {
		t.Errorf("wrapped %q, want %q", got, want)
	}
	if got, want := wrapText(sty, "FID vs FLOPs\n"+s, sty.Width("DiT-XL/2, ddim,")), "FID vs FLOPs\nDiT-XL/2, ddim,\n50 steps,\ncfg 1.5, seed 0"; got != want {
		t.Errorf("wrapped %q, want %q", got, want)
	}
	word := strings.Repeat("abcdefghij", 8)
	got := wrapText(sty, word, vg.Inch)
	for _, line := range strings.Split(got, "\n") {
		if sty.Width(line) > vg.Inch {
			t.Errorf("line %q of a long word is wider than an inch", line)
		}
	}
	if strings.ReplaceAll(got, "\n", "") != word {
		t.Errorf("a long word wrapped to %q", got)
	}
	if got := truncateText(ch.legend.TextStyle, "a-very-long-method-family-name", vg.Inch/2); !strings.HasSuffix(got, "…") || ch.legend.TextStyle.Width(got) > vg.Inch/2 {
		t.Errorf("truncated to %q", got)
	}
}

// TestRenderSamples renders the synthetic figures; with CACHEBENCH_KEEP_REPORT set they are
// kept in its samples/ folder to look at.
func TestRenderSamples(t *testing.T) {
	for _, f := range layoutFigures(t) {
		var b strings.Builder
		if err := f.Render(&b, "png"); err != nil {
			t.Fatal(err)
		}
		checkPNG(t, f.Name, []byte(b.String()))
		if keepReport != "" {
			dir := filepath.Join(keepReport, "samples")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f.Name+".png"), []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// squash drops white space, so that a wrapped text compares equal to its source.
func squash(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// inkIn counts the pixels of img darker than light grey inside r (points, origin bottom left).
func inkIn(img image.Image, dpi float64, r vg.Rectangle) int {
	b := img.Bounds()
	scale := dpi / 72
	x0, x1 := int(float64(r.Min.X)*scale), int(float64(r.Max.X)*scale)
	y0, y1 := b.Dy()-int(float64(r.Max.Y)*scale), b.Dy()-int(float64(r.Min.Y)*scale)
	n := 0
	for y := max(y0, b.Min.Y); y < min(y1, b.Max.Y); y++ {
		for x := max(x0, b.Min.X); x < min(x1, b.Max.X); x++ {
			if g := color.GrayModel.Convert(img.At(x, y)).(color.Gray); g.Y < 200 {
				n++
			}
		}
	}
	return n
}

// A family's runs are joined by a line only when one parameter varies between them.
func TestVaryingParams(t *testing.T) {
	series := func(settings ...string) Series {
		var s Series
		for i, st := range settings {
			s.Points = append(s.Points, Point{Speedup: float64(i + 1), Row: &Row{Setting: st}})
		}
		return s
	}
	for _, c := range []struct {
		s    Series
		want int
	}{
		{series("N=3, ratio=0.3", "N=5, ratio=0.3"), 1},
		{series("N=3, ratio=0.3", "N=5, ratio=0.3", "N=3, ratio=0"), 2},
		{series("N=3", "N=3"), 0},
	} {
		if got := varyingParams(c.s); got != c.want {
			t.Errorf("%v: %d varying parameters, want %d", c.s.Points, got, c.want)
		}
	}
}
