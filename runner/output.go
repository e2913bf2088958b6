package runner

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// WriteSample stores one sample: a PNG for 1- or 3-channel images (DiT's conversion
// clamp(127.5·x + 128, 0, 255) → uint8), else the raw latent as safetensors. It returns the
// path and the file's sha256.
func WriteSample(dir string, i int, x []float32, c, h, w int) (string, string, error) {
	var path string
	if c == 1 || c == 3 {
		path = filepath.Join(dir, fmt.Sprintf("%06d.png", i))
		px := func(ch, y, xx int) uint8 {
			v := 127.5*x[(ch*h+y)*w+xx] + 128
			return uint8(max(0, min(255, v)))
		}
		var img image.Image
		if c == 1 {
			g := image.NewGray(image.Rect(0, 0, w, h))
			for y := range h {
				for xx := range w {
					g.SetGray(xx, y, color.Gray{Y: px(0, y, xx)})
				}
			}
			img = g
		} else {
			rgb := image.NewRGBA(image.Rect(0, 0, w, h))
			for y := range h {
				for xx := range w {
					rgb.SetRGBA(xx, y, color.RGBA{R: px(0, y, xx), G: px(1, y, xx), B: px(2, y, xx), A: 255})
				}
			}
			img = rgb
		}
		f, err := os.Create(path)
		if err != nil {
			return "", "", err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return "", "", fmt.Errorf("%s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return "", "", err
		}
	} else {
		path = filepath.Join(dir, fmt.Sprintf("%06d.safetensors", i))
		if err := checkpoint.WriteSafetensors(path, map[string]*checkpoint.Tensor{"latent": checkpoint.NewF32(x, c, h, w)}, nil); err != nil {
			return "", "", err
		}
	}
	hash, err := checkpoint.FileHash(path)
	return path, hash, err
}
