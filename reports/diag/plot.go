package diag

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/cachebench/cachebench/harness/store"
)

// grid is a dense call × block (or row × column) matrix for heat maps; NaN cells are blank.
type grid struct {
	z      [][]float64 // [c][r]
	xs, ys []float64
}

func (g grid) Dims() (c, r int)   { return len(g.xs), len(g.ys) }
func (g grid) Z(c, r int) float64 { return g.z[c][r] }
func (g grid) X(c int) float64    { return g.xs[c] }
func (g grid) Y(r int) float64    { return g.ys[r] }

func newGrid(c, r int) grid {
	g := grid{z: make([][]float64, c), xs: make([]float64, c), ys: make([]float64, r)}
	for i := range g.z {
		g.z[i] = make([]float64, r)
		for j := range g.z[i] {
			g.z[i][j] = math.NaN()
		}
		g.xs[i] = float64(i)
	}
	for j := range g.ys {
		g.ys[j] = float64(j)
	}
	return g
}

// heatGrid is the call × block grid of the module's field (dyn or err), each cell the mean of its
// batch rows (NaN where none), with the range of the cells.
func heatGrid(stats []store.StepStat, field, module string) (g grid, lo, hi float64, err error) {
	calls, blocks := 0, 0
	for _, s := range stats {
		if s.Sample == nil && s.Block >= 0 && s.Module == module {
			calls, blocks = max(calls, s.Call+1), max(blocks, s.Block+1)
		}
	}
	if calls == 0 {
		return g, 0, 0, fmt.Errorf("no %s rows to plot", module)
	}
	g = newGrid(calls, blocks)
	// A call has one row per batch; a cell is their mean (the last row alone would hide the rest).
	sum, n := make([][]float64, calls), make([][]int, calls)
	for c := range n {
		sum[c], n[c] = make([]float64, blocks), make([]int, blocks)
	}
	for _, s := range stats {
		if s.Sample != nil || s.Block < 0 || s.Module != module {
			continue
		}
		v := s.DynRelL2
		if field == "err" {
			v = s.ErrRelL2
		}
		if v != nil && !math.IsNaN(*v) {
			sum[s.Call][s.Block] += *v
			n[s.Call][s.Block]++
		}
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	any := false
	for c := range n {
		for b, k := range n[c] {
			if k > 0 {
				v := sum[c][b] / float64(k)
				g.z[c][b] = v
				lo, hi, any = min(lo, v), max(hi, v), true
			}
		}
	}
	if !any {
		return g, 0, 0, fmt.Errorf("no %s values for %s (cache error needs --audit-samples > 0)", field, module)
	}
	return g, lo, hi, nil
}

// Heatmap plots a module's relative L2 dynamics ("dyn") or cache error ("err") over call × block.
func Heatmap(stats []store.StepStat, field, module, title string) (*plot.Plot, error) {
	g, lo, hi, err := heatGrid(stats, field, module)
	if err != nil {
		return nil, err
	}
	pal := moreland.SmoothBlueRed()
	pal.SetMin(lo)
	pal.SetMax(math.Max(hi, lo+1e-12))
	h := plotter.NewHeatMap(g, pal.Palette(64))
	h.NaN = color.Gray{Y: 235} // not measured (e.g. no cache error on a fully computed step)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s (blue %.3g → red %.3g; grey: none)", title, lo, hi)
	p.X.Label.Text = "model call (0 = pure noise)"
	p.Y.Label.Text = "block"
	p.Y.Tick.Marker = blockTicks(len(g.ys))
	p.Add(h)
	return p, nil
}

// blockTicks marks the block axis at the cells' centres (the heat map's cell r spans r±0.5),
// labelling about ten of them so that a deep model's labels do not collide.
func blockTicks(blocks int) plot.Ticker {
	every := max1((blocks + 9) / 10)
	return plot.TickerFunc(func(_, _ float64) []plot.Tick {
		ts := make([]plot.Tick, blocks)
		for b := range ts {
			ts[b].Value = float64(b)
			if b%every == 0 {
				ts[b].Label = fmt.Sprint(b)
			}
		}
		return ts
	})
}

// ErrorAccumulation plots the sampler state's relative deviation from the uncached trajectory
// over calls, one panel per method.
func ErrorAccumulation(runs map[string][]store.StepStat, order []string) (*Panels, error) {
	return perCall(runs, order, "state deviation\n(relative L2)",
		"no state error rows (record with --audit-samples > 0)", statePerCall)
}

// FeatureDynamics plots, per run, the mean feature dynamics of every call: the relative L1 change
// of each module's output since the previous call (batch rows), averaged over the modules that
// ever recorded one, a skipped module counting 0 (its output is the cached one: it does not move).
// This is the quantity DaTo argues caching suppresses and dynamics-aware pruning keeps.
func FeatureDynamics(runs map[string][]store.StepStat, order []string) (*Panels, error) {
	return perCall(runs, order, "output change\n(mean relative L1)",
		"no module dynamics recorded (record light or full)", dynamicsPerCall)
}

// MLPCacheError plots, per run, the relative L2 error of the MLP outputs served from the cache
// at every call, one panel per method (see mlpErrorPerCall).
func MLPCacheError(runs map[string][]store.StepStat, order []string) (*Panels, error) {
	return perCall(runs, order, "MLP cache error\n(relative L2, 0: computed)",
		"no MLP cache error rows (record with --audit-samples > 0)", mlpErrorPerCall)
}

// perCall plots one line over model calls per labelled run, the points taken from its rows by
// curve, one panel per method (runs without points are left out and listed in Omitted; none at
// all is the error none).
func perCall(runs map[string][]store.StepStat, order []string, yLabel, none string, curveOf func([]store.StepStat) plotter.XYs) (*Panels, error) {
	var curves []curve
	var omitted []string
	for _, label := range order {
		pts := curveOf(runs[label])
		if len(pts) == 0 {
			omitted = append(omitted, label)
			continue
		}
		curves = append(curves, curve{label: label, pts: pts})
	}
	if len(curves) == 0 {
		return nil, fmt.Errorf("%s", none)
	}
	ps, err := newPanels(curves, yLabel)
	if err != nil {
		return nil, err
	}
	ps.Omitted = omitted
	return ps, nil
}

// meanPerCall averages the values of the selected rows per call, calls ascending: a recording
// stores one batch row per batch (and per block), and one point per call keeps the line from
// running back and forth between them.
func meanPerCall(stats []store.StepStat, value func(store.StepStat) (float64, bool)) plotter.XYs {
	sum, cnt := map[int]float64{}, map[int]int{}
	for _, s := range stats {
		if v, ok := value(s); ok {
			sum[s.Call] += v
			cnt[s.Call]++
		}
	}
	pts := make(plotter.XYs, 0, len(cnt))
	for c := range cnt {
		pts = append(pts, plotter.XY{X: float64(c), Y: sum[c] / float64(cnt[c])})
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
	return pts
}

// statePerCall is ErrorAccumulation's curve of one run: the state's error, averaged over batches.
func statePerCall(stats []store.StepStat) plotter.XYs {
	return meanPerCall(stats, func(s store.StepStat) (float64, bool) {
		if s.Sample == nil && s.Module == "state" && s.ErrRelL2 != nil && !math.IsNaN(*s.ErrRelL2) {
			return *s.ErrRelL2, true
		}
		return 0, false
	})
}

// mlpErrorPerCall is MLPCacheError's curve of one run: per call, the mean relative L2 error of
// the MLP rows that have one (the blocks served from the cache), 0 at a call where every block
// computed its MLP (nothing came from the cache, so nothing is off). A run without any MLP error
// row has no curve: its method caches elsewhere, or it was recorded without an audit, and a flat
// 0 would read as "exact".
func mlpErrorPerCall(stats []store.StepStat) plotter.XYs {
	audited := false
	for _, s := range stats {
		if s.Sample == nil && s.Module == "mlp" && s.ErrRelL2 != nil {
			audited = true
			break
		}
	}
	if !audited {
		return nil
	}
	pts := meanPerCall(stats, func(s store.StepStat) (float64, bool) {
		if s.Sample == nil && s.Module == "mlp" && s.ErrRelL2 != nil && !math.IsNaN(*s.ErrRelL2) {
			return *s.ErrRelL2, true
		}
		return 0, false
	})
	seen := map[int]bool{}
	for _, pt := range pts {
		seen[int(pt.X)] = true
	}
	for _, s := range stats {
		if s.Sample == nil && s.Module == "mlp" && !seen[s.Call] {
			seen[s.Call] = true
			pts = append(pts, plotter.XY{X: float64(s.Call)})
		}
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
	return pts
}

// dynamicsPerCall is FeatureDynamics' curve of one run: (call, mean dynamics), calls ascending.
func dynamicsPerCall(stats []store.StepStat) plotter.XYs {
	type key struct {
		block  int
		module string
	}
	moves := map[key]bool{}
	for _, s := range stats {
		if s.Sample == nil && s.DynRelL1 != nil {
			moves[key{s.Block, s.Module}] = true
		}
	}
	sum, cnt := map[int]float64{}, map[int]int{}
	for _, s := range stats {
		if s.Sample != nil || !moves[key{s.Block, s.Module}] || s.Call == 0 {
			continue
		}
		switch {
		case s.DynRelL1 != nil:
			sum[s.Call] += *s.DynRelL1
		case s.Action == "skip":
		default:
			continue
		}
		cnt[s.Call]++
	}
	var pts plotter.XYs
	for c := range cnt {
		pts = append(pts, plotter.XY{X: float64(c), Y: sum[c] / float64(cnt[c])})
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
	return pts
}

// TokenRefresh plots how often each token of the gridH × gridW grid was recomputed on partial
// steps (from the token indices of a full recording), summed over calls, blocks and rows.
func TokenRefresh(stats []store.StepStat, gridH, gridW int, module string) (*plot.Plot, error) {
	g := newGrid(gridW, gridH)
	for c := range g.z {
		for r := range g.z[c] {
			g.z[c][r] = 0
		}
	}
	found := false
	for _, s := range stats {
		if s.Sample != nil || s.Tokens == "" || s.Module != module {
			continue
		}
		var rows [][]int32
		if err := json.Unmarshal([]byte(s.Tokens), &rows); err != nil {
			return nil, fmt.Errorf("call %d block %d: token indices: %w", s.Call, s.Block, err)
		}
		for _, row := range rows {
			for _, t := range row {
				if int(t) < gridH*gridW {
					// Row 0 of the token grid at the top: y counts down (see the tick labels).
					g.z[int(t)%gridW][gridH-1-int(t)/gridW]++
					found = true
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no recomputed token indices (record with --record full and a token-wise method)")
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for c := range g.z {
		for _, v := range g.z[c] {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	pal := moreland.SmoothBlueRed()
	pal.SetMin(lo)
	pal.SetMax(math.Max(hi, lo+1))
	p := plot.New()
	p.Title.Text = fmt.Sprintf("times each token's %s was recomputed (blue %.0f → red %.0f)", module, lo, hi)
	p.X.Label.Text = "token column"
	p.Y.Label.Text = "token row"
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ts []plot.Tick
		for y := 0; y < gridH; y++ {
			label := ""
			if (gridH-1-y)%max1(gridH/4) == 0 {
				label = fmt.Sprint(gridH - 1 - y)
			}
			ts = append(ts, plot.Tick{Value: float64(y), Label: label})
		}
		return ts
	})
	p.Add(plotter.NewHeatMap(g, pal.Palette(64)))
	return p, nil
}

func max1(v int) int { return max(v, 1) }

func palette(i int) plotColor {
	cols := []plotColor{{31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14}, {148, 103, 189}, {140, 86, 75},
		{227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}}
	return cols[i%len(cols)]
}

// Drawer is a figure Save can write: a plot, or panels.
type Drawer interface{ Draw(draw.Canvas) }

// Save writes a plot or panels as PNG and SVG next to each other: dir/name.png, dir/name.svg.
func Save(p Drawer, dir, name string) ([]string, error) {
	w, h := 7*vg.Inch, 4*vg.Inch
	if ps, ok := p.(*Panels); ok {
		w, h = ps.Size()
	}
	var out []string
	for _, ext := range []string{"png", "svg"} {
		c, err := draw.NewFormattedCanvas(w, h, ext)
		if err != nil {
			return nil, err
		}
		p.Draw(draw.New(c))
		path := filepath.Join(dir, name+"."+ext)
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if _, err := c.WriteTo(f); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}
