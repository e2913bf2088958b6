package reports

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image"
	"image/png"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

func TestParetoFront(t *testing.T) {
	pts := []Point{{Speedup: 1, Quality: 2.4}, {Speedup: 2.3, Quality: 3.0}, {Speedup: 2.8, Quality: 3.9},
		{Speedup: 2.7, Quality: 3.5}, {Speedup: 2.0, Quality: 3.1}, {Speedup: 4.5, Quality: 6.6}, {Speedup: 2.3, Quality: 3.0}}
	front := ParetoFront(pts, LowerIsBetter)
	var got []float64
	for _, p := range front {
		got = append(got, p.Speedup)
	}
	// 2.0 (beaten by 2.3 at better FID) is off the front; the duplicate 2.3 points both stay.
	want := []float64{1, 2.3, 2.3, 2.7, 2.8, 4.5}
	if len(got) != len(want) {
		t.Fatalf("front %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("front %v, want %v", got, want)
		}
	}
	hi := ParetoFront([]Point{{Speedup: 1, Quality: 240}, {Speedup: 2, Quality: 230}, {Speedup: 1.5, Quality: 220}}, HigherIsBetter)
	if len(hi) != 2 || hi[0].Quality != 240 || hi[1].Quality != 230 {
		t.Errorf("IS front %+v, want 240 and 230", hi)
	}
	if ParetoFront(pts, NoDirection) != nil {
		t.Error("a metric without a direction has no front")
	}
}

func TestFigures(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	figs, skipped := NewFigures(d.Groups[0], "1-dit")
	// FID is the one headline metric; sFID, IS, precision and recall repeat its claim.
	if len(figs) != 2 {
		t.Fatalf("%d figures, want FID × 2 speedups", len(figs))
	}
	f := figs[0]
	if len(skipped) != 1 || !strings.Contains(skipped[0], "IS") || !strings.Contains(skipped[0], "in the table only") {
		t.Errorf("skipped %q, want the table-only metrics named", skipped)
	}
	if f.Name != "1-dit-fid-vs-flops" || f.Metric != "fid" || f.Axis != FLOPsAxis || len(f.Series) != 4 || f.Title != "FID vs FLOPs speedup" || f.Subtitle != d.Groups[0].Title || f.Claim != claimFLOPs {
		t.Errorf("first figure %s (%s, %v, %d series), skipped %q", f.Name, f.Metric, f.Axis, len(f.Series), skipped)
	}
	// FID vs FLOPs speedup: every run is on the front (each faster one is worse), in speedup order.
	var front []string
	for _, p := range f.Front {
		front = append(front, p.Row.Method+" "+p.Row.Setting)
	}
	if got, want := strings.Join(front, "|"), "none |toca N=3, ratio=0.07, ratio_scheduler=ToCa-ddim50|steps steps=20|fora N=3|fora N=5"; got != want {
		t.Errorf("front %q, want %q", got, want)
	}
	// The second group has one run with a FLOPs speedup and none with a latency speedup: nothing to plot.
	if figs2, skipped2 := NewFigures(d.Groups[1], "2-dit"); len(figs2) != 0 || len(skipped2) != 4 {
		t.Errorf("group 2: %d figures, skipped %q", len(figs2), skipped2)
	}

	for _, f := range figs[:2] {
		var pb bytes.Buffer
		if err := f.Render(&pb, "png"); err != nil {
			t.Fatal(err)
		}
		checkPNG(t, f.Name, pb.Bytes())
		var sb bytes.Buffer
		if err := f.Render(&sb, "svg"); err != nil {
			t.Fatal(err)
		}
		checkSVG(t, f.Name, sb.Bytes())
	}
	if err := f.Render(io.Discard, "gif"); err == nil {
		t.Error("gif: want an error")
	}
}

// checkPNG decodes a PNG and checks that something was drawn on it.
func checkPNG(t *testing.T, name string, data []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s.png: %v", name, err)
	}
	b := img.Bounds()
	if b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("%s.png is %v", name, b)
	}
	if uniform(img) {
		t.Fatalf("%s.png is blank", name)
	}
}

func uniform(img image.Image) bool {
	b := img.Bounds()
	r0, g0, b0, _ := img.At(b.Min.X, b.Min.Y).RGBA()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			if r, g, bb, _ := img.At(x, y).RGBA(); r != r0 || g != g0 || bb != b0 {
				return false
			}
		}
	}
	return true
}

// checkSVG parses an SVG document as XML and checks its root element.
func checkSVG(t *testing.T, name string, data []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	root := ""
	elems := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s.svg: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			elems++
		}
	}
	if root != "svg" || elems < 10 {
		t.Fatalf("%s.svg: root <%s>, %d elements", name, root, elems)
	}
}

// Runs that recorded their cache memory get quality-vs-memory figures: x from 0 MiB, no 1×
// baseline, and a front on which less memory is better.
func TestMemoryFigures(t *testing.T) {
	row := func(method string, mib, fid, speed float64) *Row {
		return &Row{Method: method, Metrics: map[string]store.Metric{"fid": {Name: "fid", Value: fid}},
			FLOPsSpeedup: known(speed), LatencySpeedup: known(speed), CacheBytes: known(mib * (1 << 20))}
	}
	g := &Group{Title: "t", Rows: []*Row{row("fora", 2, 3.9, 2.7), row("toca", 2.1, 3.0, 2.3), row("taylorseer", 6, 2.5, 2.7), row("duca", 3, 3.5, 2.4)}}
	figs, _ := NewFigures(g, "g")
	var mem *Figure
	for i := range figs {
		if figs[i].Axis == MemoryAxis {
			mem = &figs[i]
		}
	}
	if mem == nil || mem.Name != "g-fid-vs-memory" {
		t.Fatalf("no memory figure among %d", len(figs))
	}
	// fora (2 MiB, 3.9), toca (2.1, 3.0) and taylorseer (6, 2.5) are each the best at their
	// memory; duca (3 MiB, 3.5) is beaten by toca on both.
	var front []string
	for _, p := range mem.Front {
		front = append(front, p.Row.Method)
	}
	if strings.Join(front, ",") != "fora,toca,taylorseer" {
		t.Errorf("memory front %v", front)
	}
	ch, err := mem.chart()
	if err != nil {
		t.Fatal(err)
	}
	if ch.plot.X.Min != 0 || ch.plot.X.Max < 6 || slices.Contains(ch.labels, "baseline (1×)") || len(ch.baseline) != 0 {
		t.Errorf("memory axis [%g, %g], legend %v", ch.plot.X.Min, ch.plot.X.Max, ch.labels)
	}
}

// Metrics against none leave none out of their figures: its PSNR against itself is a cap (100),
// not a measurement, and would squash every other point into the bottom of the axes.
func TestVsNoneFiguresLeaveTheReferenceOut(t *testing.T) {
	row := func(method string, psnr, fid, speed float64) *Row {
		return &Row{Method: method, Metrics: map[string]store.Metric{"psnr_vs_none": {Name: "psnr_vs_none", Value: psnr}, "fid": {Name: "fid", Value: fid}},
			FLOPsSpeedup: known(speed), LatencySpeedup: known(speed)}
	}
	g := &Group{Title: "t", Rows: []*Row{row("none", 100, 3.0, 1), row("fora", 30, 3.5, 2.7), row("toca", 28, 3.4, 2.3)}}
	figs, _ := NewFigures(g, "g")
	seen := 0
	for _, f := range figs {
		for _, s := range f.Series {
			if f.Metric == "psnr_vs_none" && s.Method == "none" {
				t.Errorf("%s plots none", f.Name)
			}
			if f.Metric == "fid" && s.Method == "none" {
				seen++
			}
		}
	}
	if seen == 0 {
		t.Error("the FID figures lost none too")
	}
}

// A method keeps its colour in every figure of a group, even where a figure leaves a run out.
func TestSeriesColorsStableAcrossFigures(t *testing.T) {
	row := func(method string, psnr, speed float64) *Row {
		return &Row{Method: method, Metrics: map[string]store.Metric{"psnr_vs_none": {Name: "psnr_vs_none", Value: psnr}, "fid": {Name: "fid", Value: psnr}},
			FLOPsSpeedup: known(speed), LatencySpeedup: known(speed)}
	}
	g := &Group{Title: "t", Rows: []*Row{row("none", 100, 1), row("fora", 30, 2.7), row("toca", 28, 2.3)}}
	figs, _ := NewFigures(g, "g")
	color := map[string]int{}
	for _, f := range figs {
		for _, s := range f.Series {
			if c, ok := color[s.Method]; ok && c != s.Color {
				t.Errorf("%s: %s has colour %d, elsewhere %d", f.Name, s.Method, s.Color, c)
			}
			color[s.Method] = s.Color
		}
	}
	if color["none"] != 0 || color["fora"] != 1 || color["toca"] != 2 {
		t.Errorf("colours %v, want the group's method order", color)
	}
}
