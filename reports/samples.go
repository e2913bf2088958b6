package reports

import (
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"

	"github.com/cachebench/cachebench/harness/store"
)

// gridSide is the number of samples per row and column of a sample grid.
const gridSide = 6

// claimSamples heads the sample grids in report.md.
const claimSamples = "Samples beside none's (same noise and labels)"

// AddSampleGrids is the Builder of one image per cached run: its first gridSide² samples beside
// none's samples of the same index, noise seed and label, [none | method], so that what caching
// changed is seen at a glance. Without a none run with PNG samples, each run gets its grid
// alone. Runs whose samples are not PNG images (latents, or outputs = "hash") get none.
func AddSampleGrids(s *Section) error {
	load := func(r *Row) ([]store.Sample, error) {
		db, err := store.OpenReadOnly(r.Source)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		return db.Samples(r.Run.ID)
	}
	var base *Row
	var baseSamples []store.Sample
	for _, r := range s.Group.Rows {
		if r.Method != BaselineMethod {
			continue
		}
		ss, err := load(r)
		if err != nil {
			return err
		}
		if img, _ := sampleGrid(ss); img != nil {
			base, baseSamples = r, ss
			break
		}
	}
	for i, r := range s.Group.Rows {
		if r == base {
			continue
		}
		samples, err := load(r)
		if err != nil {
			return err
		}
		var fig *Figure
		if base != nil {
			fig = pairedGrid(baseSamples, samples, r.Method)
		}
		if fig == nil {
			img, _ := sampleGrid(samples)
			if img == nil {
				continue
			}
			fig = imageFigure(img, fmt.Sprintf("%s: samples 0-%d", r.Method, min(len(samples), gridSide*gridSide)-1), nil, nil)
		} else {
			fig.Title = "none | " + r.Method
		}
		fig.Name, fig.Subtitle, fig.Claim = fmt.Sprintf("%s-samples-%d", s.ID, i), r.Setting, claimSamples
		fig.Custom.Title.Text = fig.Title
		s.Figures = append(s.Figures, *fig)
	}
	return nil
}

// sameNoise is the key of a sample that two runs share when they start from the same noise.
type sameNoise struct {
	index int
	seed  int64
	label int
}

func noiseKey(s store.Sample) sameNoise {
	k := sameNoise{index: s.Index, seed: s.NoiseSeed, label: -1}
	if s.Label != nil {
		k.label = *s.Label
	}
	return k
}

// pairedGrid is the [none | method] figure of the samples both runs drew from the same noise;
// nil when they share none or either is not PNGs.
func pairedGrid(none, method []store.Sample, name string) *Figure {
	byKey := map[sameNoise]store.Sample{}
	for _, m := range method {
		byKey[noiseKey(m)] = m
	}
	var left, right []store.Sample
	for _, n := range none {
		if m, ok := byKey[noiseKey(n)]; ok && len(left) < gridSide*gridSide {
			left, right = append(left, n), append(right, m)
		}
	}
	l, _ := sampleGrid(left)
	r, _ := sampleGrid(right)
	if l == nil || r == nil || l.Bounds() != r.Bounds() {
		return nil
	}
	b := l.Bounds()
	gap := max(8, b.Dx()/20)
	out := image.NewRGBA(image.Rect(0, 0, 2*b.Dx()+gap, b.Dy()))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	draw.Draw(out, b, l, b.Min, draw.Src)
	draw.Draw(out, b.Add(image.Pt(b.Dx()+gap, 0)), r, b.Min, draw.Src)
	w := float64(out.Bounds().Dx())
	return imageFigure(out, "", []plotter.XY{{X: float64(b.Dx()) / 2, Y: 0}, {X: w - float64(b.Dx())/2, Y: 0}}, []string{"none", name})
}

// imageFigure shows img with hidden axes; under, when given, are the x centres of the
// halves that names label under the image.
func imageFigure(img image.Image, title string, under []plotter.XY, names []string) *Figure {
	p := plot.New()
	p.Title.Text = title
	b := img.Bounds()
	p.Add(plotter.NewImage(img, 0, 0, float64(b.Dx()), float64(b.Dy())))
	p.HideAxes()
	if len(under) == 2 {
		// Below the image, inside the plot's own range, so that the labels take no width.
		h := float64(b.Dy())
		under[0].Y, under[1].Y = -0.06*h, -0.06*h
		if ls, err := plotter.NewLabels(plotter.XYLabels{XYs: under, Labels: names}); err == nil {
			for i := range ls.TextStyle {
				ls.TextStyle[i].Font.Size = vg.Points(10)
				ls.TextStyle[i].XAlign = text.XCenter
			}
			p.Add(ls)
			p.Y.Min = -0.1 * h
		}
	}
	return &Figure{Title: title, Custom: p}
}

// sampleGrid tiles the first samples' PNG files; nil when they are not PNGs on disk.
func sampleGrid(samples []store.Sample) (image.Image, error) {
	var tiles []image.Image
	for _, s := range samples {
		if len(tiles) == gridSide*gridSide {
			break
		}
		f, err := os.Open(s.OutputPath)
		if err != nil {
			return nil, nil
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			return nil, nil
		}
		tiles = append(tiles, img)
	}
	if len(tiles) == 0 {
		return nil, nil
	}
	tw, th := tiles[0].Bounds().Dx(), tiles[0].Bounds().Dy()
	const gap = 2
	cols := min(gridSide, len(tiles))
	rows := (len(tiles) + cols - 1) / cols
	out := image.NewRGBA(image.Rect(0, 0, cols*(tw+gap)-gap, rows*(th+gap)-gap))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	for k, t := range tiles {
		x, y := (k%cols)*(tw+gap), (k/cols)*(th+gap)
		draw.Draw(out, image.Rect(x, y, x+tw, y+th), t, t.Bounds().Min, draw.Src)
	}
	return out, nil
}
