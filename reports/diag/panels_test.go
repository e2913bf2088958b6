package diag

import (
	"fmt"
	"image/color"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/cachebench/cachebench/harness/store"
)

func f64(v float64) *float64 { return &v }

// stateRows is a run's state error per call, stored twice per call as two batches record it.
func stateRows(calls int, slope float64) []store.StepStat {
	var out []store.StepStat
	for c := range calls {
		for b := range 2 {
			out = append(out, store.StepStat{Call: c, Block: -1, Module: "state", ErrRelL2: f64(slope * float64(c) * float64(1+b))})
		}
	}
	return out
}

// The runs are grouped into one panel per method (the label's first word), in order of first
// appearance; every panel has the same ranges, starting at 0; none is a grey line in each panel
// and has no panel of its own.
func TestErrorAccumulationPanels(t *testing.T) {
	order := []string{"none", "fora N=2", "toca N=3", "fora N=3", "steps steps=20", "deltadit"}
	runs := map[string][]store.StepStat{
		"none":           stateRows(50, 0),
		"fora N=2":       stateRows(50, 0.001),
		"toca N=3":       stateRows(50, 0.004),
		"fora N=3":       stateRows(50, 0.002),
		"steps steps=20": stateRows(20, 0.01),
		"deltadit":       {{Call: 0, Module: "mlp", Action: "full"}}, // no state rows: no line
	}
	ps, err := ErrorAccumulation(runs, order)
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, p := range ps.Plots {
		titles = append(titles, p.Title.Text)
	}
	if got := strings.Join(titles, ","); got != "fora,toca,steps" {
		t.Errorf("panels %s, want fora,toca,steps", got)
	}
	if len(ps.Omitted) != 1 || ps.Omitted[0] != "deltadit" {
		t.Errorf("omitted %q, want [deltadit]", ps.Omitted)
	}
	// The largest mean is toca's at call 49: 0.004·49·1.5.
	for _, p := range ps.Plots {
		if p.X.Min != 0 || p.X.Max != 49 || p.Y.Min != 0 || p.Y.Max < 0.294 || p.Y.Max > 0.31 {
			t.Errorf("%s: x %g..%g, y %g..%g; want 0..49 and 0..about 0.294 in every panel", p.Title.Text, p.X.Min, p.X.Max, p.Y.Min, p.Y.Max)
		}
	}
	wantLegend := [][]string{{"N=2", "N=3", "none"}, {"N=3", "none"}, {"steps=20", "none"}}
	for i, es := range ps.legends {
		var got []string
		for _, e := range es {
			got = append(got, e.label)
		}
		if fmt.Sprint(got) != fmt.Sprint(wantLegend[i]) {
			t.Errorf("%s: legend %q, want %q", ps.Plots[i].Title.Text, got, wantLegend[i])
		}
		if last := es[len(es)-1]; last.line.Color != referenceColor {
			t.Errorf("%s: none's line is %v, want the grey reference", ps.Plots[i].Title.Text, last.line.Color)
		}
	}
	// Two batch rows per call make one point per call, their mean.
	pts := statePerCall(runs["fora N=2"])
	if len(pts) != 50 || pts[10].X != 10 || pts[10].Y != 0.001*10*1.5 {
		t.Errorf("fora N=2: %d points, call 10 at %v; want 50, (10, 0.015)", len(pts), pts[10])
	}
}

// Alone, none is a panel of its own; without any point the figure is an error.
func TestPanelsNoneAlone(t *testing.T) {
	ps, err := ErrorAccumulation(map[string][]store.StepStat{"none": stateRows(5, 0.1)}, []string{"none"})
	if err != nil || len(ps.Plots) != 1 || ps.Plots[0].Title.Text != "none" {
		t.Fatalf("panels %v, %v; want one panel, none", ps, err)
	}
	if _, err := ErrorAccumulation(map[string][]store.StepStat{"fora N=2": nil}, []string{"fora N=2"}); err == nil {
		t.Error("no state rows: want an error")
	}
}

// The MLP cache error of a call is the mean over the blocks that have an error row (served
// from the cache); a call where every block computed is 0; a run without any such row has no
// curve (a flat 0 would read as exact).
func TestMLPErrorPerCall(t *testing.T) {
	one := 1
	stats := []store.StepStat{
		{Call: 0, Block: 0, Module: "mlp", Action: "full"},
		{Call: 0, Block: 1, Module: "mlp", Action: "full"},
		{Call: 1, Block: 0, Module: "mlp", Action: "reuse", ErrRelL2: f64(0.2)},
		{Call: 1, Block: 1, Module: "mlp", Action: "reuse", ErrRelL2: f64(0.4)},
		{Call: 1, Block: 0, Module: "attn", Action: "reuse", ErrRelL2: f64(9)},              // another module
		{Call: 1, Block: 0, Module: "mlp", Sample: &one, Action: "reuse", ErrRelL2: f64(9)}, // a sample's row
		{Call: 2, Block: 0, Module: "mlp", Action: "partial", ErrRelL2: f64(0.1)},
		{Call: 2, Block: 1, Module: "mlp", Action: "full"},
		{Call: 3, Block: 0, Module: "mlp", Action: "full"},
		{Call: 3, Block: 1, Module: "mlp", Action: "full"},
		{Call: 3, Block: -1, Module: "state", ErrRelL2: f64(7)},
	}
	pts := mlpErrorPerCall(stats)
	want := plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 0.30000000000000004}, {X: 2, Y: 0.1}, {X: 3, Y: 0}}
	if fmt.Sprint(pts) != fmt.Sprint(want) {
		t.Errorf("curve %v, want %v", pts, want)
	}
	if pts := mlpErrorPerCall(stats[:2]); pts != nil {
		t.Errorf("no error rows: curve %v, want none", pts)
	}
}

// The block axis is marked at the cells' centres, the integers 0..L−1, labelled by their index.
func TestHeatmapBlockTicks(t *testing.T) {
	for _, blocks := range []int{4, 28} {
		var stats []store.StepStat
		for c := range 3 {
			for b := range blocks {
				stats = append(stats, store.StepStat{Call: c, Block: b, Module: "mlp", DynRelL2: f64(float64(c + b))})
			}
		}
		p, err := Heatmap(stats, "dyn", "mlp", "t")
		if err != nil {
			t.Fatal(err)
		}
		ts := p.Y.Tick.Marker.Ticks(p.Y.Min, p.Y.Max)
		if len(ts) != blocks {
			t.Errorf("%d blocks: %d ticks, want one per block", blocks, len(ts))
		}
		labelled := 0
		for i, tk := range ts {
			if tk.Value != float64(i) {
				t.Errorf("%d blocks: tick %d at %g, want %d", blocks, i, tk.Value, i)
			}
			if tk.Label != "" {
				labelled++
				if tk.Label != fmt.Sprint(i) {
					t.Errorf("%d blocks: tick at %g labelled %q", blocks, tk.Value, tk.Label)
				}
			}
		}
		if ts[0].Label != "0" || labelled < 4 || labelled > 10 {
			t.Errorf("%d blocks: %d labels, the first %q; want 0 labelled and 4 to 10 labels", blocks, labelled, ts[0].Label)
		}
	}
}

// manyPanels is a figure of ten methods, some with long settings, the largest values at the
// panels' top corners (where a legend inside the axes would go).
func manyPanels(t *testing.T) (*Panels, []curve) {
	t.Helper()
	curves := []curve{{label: "none", pts: plotter.XYs{{X: 0, Y: 0.9}, {X: 49, Y: 1}}}}
	settings := []string{"", "N=2", "N=3", "decide=per-batch, thresh=0.0899, max_continuous_cached_steps=-1, max_warmup_steps=2, mode=faithful"}
	for m := range 10 {
		for s := range 1 + m%4 {
			label := strings.TrimSpace(fmt.Sprintf("method%c %s", 'a'+m, settings[(m+s)%4]))
			curves = append(curves, curve{label: label, pts: plotter.XYs{{X: 0, Y: 1}, {X: 25, Y: 0}, {X: 49, Y: 1}}})
		}
	}
	ps, err := newPanels(curves, "y\n(units)")
	if err != nil {
		t.Fatal(err)
	}
	return ps, curves
}

// Each panel's legend lies between its title and its data area, within its tile: no line point
// under it, no entry over another; the data areas are all the same size.
func TestPanelsLegendOutsideData(t *testing.T) {
	ps, curves := manyPanels(t)
	w, h := ps.Size()
	c := vgimg.New(w, h)
	ls := ps.draw(draw.New(c))
	if len(ls) != 10 || ps.Rows() != 3 {
		t.Fatalf("%d panels in %d rows, want 10 in 3", len(ls), ps.Rows())
	}
	for i, l := range ls {
		name := ps.Plots[i].Title.Text
		// plot.Align evens the data areas out up to the axes' glyph padding.
		if d, d0 := l.data.Size(), ls[0].data.Size(); abs(d.X-d0.X) > 1 || abs(d.Y-d0.Y) > 1 {
			t.Errorf("%s: data area %v, the first panel's %v", name, d, d0)
		}
		if d := l.data.Size(); d.X < w/8 || d.Y < panelRowHeight*2/5 {
			t.Errorf("%s: data area %v, too small", name, d)
		}
		if l.legend.Min.Y < l.data.Max.Y || l.legend.Max.Y > l.tile.Max.Y {
			t.Errorf("%s: legend band %v is not between the data area %v and the tile's top %v", name, l.legend, l.data, l.tile.Max.Y)
		}
		for j, it := range l.items {
			if it.box.Min.X < l.data.Min.X || it.box.Max.X > l.tile.Max.X || it.box.Min.Y < l.legend.Min.Y-0.01 || it.box.Max.Y > l.legend.Max.Y+0.01 {
				t.Errorf("%s: legend entry %q at %v, outside the band %v or the tile %v", name, it.text, it.box, l.legend, l.tile)
			}
			for _, o := range l.items[:j] {
				if it.box.Min.X < o.box.Max.X && o.box.Min.X < it.box.Max.X && it.box.Min.Y < o.box.Max.Y && o.box.Min.Y < it.box.Max.Y {
					t.Errorf("%s: legend entries %q %v and %q %v overlap", name, o.text, o.box, it.text, it.box)
				}
			}
		}
		dc := draw.Canvas{Canvas: c, Rectangle: l.data}
		tx, ty := ps.Plots[i].Transforms(&dc)
		for _, cv := range curves {
			for _, pt := range cv.pts {
				x, y := tx(pt.X), ty(pt.Y)
				if y > l.legend.Min.Y || y > l.data.Max.Y || x < l.data.Min.X || x > l.data.Max.X {
					t.Errorf("%s: point %v at (%v, %v) is outside the data area %v or in the legend band %v", name, pt, x, y, l.data, l.legend)
				}
			}
		}
		// The tiles of one row do not overlap.
		if i%panelCols > 0 && l.tile.Min.X < ls[i-1].tile.Max.X {
			t.Errorf("%s: tile %v overlaps its left neighbour's %v", name, l.tile, ls[i-1].tile)
		}
	}
}

// The legends are drawn where the layout puts them: ink in every panel's band.
func TestPanelsLegendDrawn(t *testing.T) {
	ps, _ := manyPanels(t)
	w, h := ps.Size()
	c := vgimg.New(w, h)
	ls := ps.draw(draw.New(c))
	img, dpi := c.Image(), c.DPI()
	for i, l := range ls {
		r := l.items[0].box
		x0, x1 := int(r.Min.X.Dots(dpi)), int(r.Max.X.Dots(dpi))
		y0, y1 := int((h - r.Max.Y).Dots(dpi)), int((h - r.Min.Y).Dots(dpi))
		n := 0
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if gray := color.GrayModel.Convert(img.At(x, y)).(color.Gray); gray.Y < 160 {
					n++
				}
			}
		}
		if n < 20 {
			t.Errorf("%s: %d dark pixels in the first legend entry %v", ps.Plots[i].Title.Text, n, r)
		}
	}
}

func abs(v vg.Length) vg.Length { return max(v, -v) }
