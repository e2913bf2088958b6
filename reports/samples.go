package reports

import (
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"

	"github.com/cachebench/cachebench/harness/store"
)

// gridSide is the number of samples per row and column of a sample grid.
const gridSide = 6

// AddSampleGrids is the Builder of one image per run: its first gridSide² samples, in sample
// index order, so that every method's grid shows the same noise and labels side by side. Runs
// whose samples are not PNG images (latents, or outputs = "hash") get none.
func AddSampleGrids(s *Section) error {
	for i, r := range s.Group.Rows {
		db, err := store.OpenReadOnly(r.Source)
		if err != nil {
			return err
		}
		samples, err := db.Samples(r.Run.ID)
		db.Close()
		if err != nil {
			return err
		}
		img, err := sampleGrid(samples)
		if err != nil || img == nil {
			continue
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s %s: samples 0-%d", r.Method, r.Setting, min(len(samples), gridSide*gridSide)-1)
		b := img.Bounds()
		p.Add(plotter.NewImage(img, 0, 0, float64(b.Dx()), float64(b.Dy())))
		p.HideAxes()
		s.Figures = append(s.Figures, Figure{Name: fmt.Sprintf("%s-samples-%d", s.ID, i), Title: p.Title.Text, Custom: p})
	}
	return nil
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
