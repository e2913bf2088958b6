// Package datasets reads the image sets that metrics are computed on: a folder of PNG/JPEG files
// or an ADM-style .npz whose arr_0 holds uint8 [N, H, W, 3] samples.
package datasets

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder with image.Decode
	_ "image/png"  // registers the PNG decoder with image.Decode
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/sbinet/npyio/npy"
)

// Images is a set of same-sized RGB images.
type Images struct {
	N, H, W int
	Pix     []uint8  // N×H×W×3, row-major NHWC, RGB
	Names   []string // file names in a folder (sorted), "arr_0[i]" in an .npz
}

// Image returns image i's H×W×3 pixels (a view into Pix).
func (im *Images) Image(i int) []uint8 {
	n := im.H * im.W * 3
	return im.Pix[i*n : (i+1)*n]
}

// ReadImages reads a folder of PNG/JPEG files (in file-name order) or an .npz holding arr_0.
//
// In a folder, files with other extensions and subfolders are skipped; every image must have the
// size of the first; grayscale is expanded to RGB and alpha dropped (colour values taken
// un-premultiplied, as PIL's convert("RGB") does). JPEG colour conversion is Go's image/jpeg,
// which can differ from libjpeg (PIL) by a few levels in chroma-subsampled images.
func ReadImages(path string) (*Images, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	if st.IsDir() {
		return readFolder(path)
	}
	return readNPZ(path, st.Size())
}

// isImageFile tells the extensions a folder is scanned for.
func isImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

func readFolder(dir string) (*Images, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && isImageFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("datasets: %s: no .png, .jpg or .jpeg files (%d other entries)", dir, len(entries))
	}
	sort.Strings(names)
	first, err := decodeFile(filepath.Join(dir, names[0]))
	if err != nil {
		return nil, err
	}
	b := first.Bounds()
	h, w := b.Dy(), b.Dx()
	if h == 0 || w == 0 {
		return nil, fmt.Errorf("datasets: %s: empty image (%d×%d)", filepath.Join(dir, names[0]), w, h)
	}
	im := &Images{N: len(names), H: h, W: w, Pix: make([]uint8, len(names)*h*w*3), Names: names}
	toRGB(im.Image(0), first)

	// Decoding dominates (a 256² PNG takes milliseconds), so files are decoded in parallel; the
	// error reported is the one of the first failing file in name order, whatever finished first.
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := filepath.Join(dir, names[i])
				img, err := decodeFile(p)
				if err != nil {
					errs[i] = err
					continue
				}
				if b := img.Bounds(); b.Dy() != h || b.Dx() != w {
					errs[i] = fmt.Errorf("datasets: %s is %d×%d pixels, but %s (the first file) is %d×%d; all images must have one size",
						p, b.Dx(), b.Dy(), names[0], w, h)
					continue
				}
				toRGB(im.Image(i), img)
			}
		}()
	}
	for i := 1; i < len(names); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return im, nil
}

func decodeFile(path string) (image.Image, error) { return DecodeImage(path, "") }

// toRGB writes img's pixels into dst (H×W×3), with fast paths for what the PNG and JPEG decoders
// return.
func toRGB(dst []uint8, img image.Image) {
	b := img.Bounds()
	w := b.Dx()
	o := 0
	switch m := img.(type) {
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := range w {
				dst[o], dst[o+1], dst[o+2] = row[4*x], row[4*x+1], row[4*x+2]
				o += 3
			}
		}
	case *image.Gray:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := range w {
				dst[o], dst[o+1], dst[o+2] = row[x], row[x], row[x]
				o += 3
			}
		}
	case *image.YCbCr:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				yi, ci := m.YOffset(x, y), m.COffset(x, y)
				dst[o], dst[o+1], dst[o+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o += 3
			}
		}
	case *image.RGBA:
		if !m.Opaque() {
			toRGBGeneric(dst, img) // un-premultiply
			return
		}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := range w {
				dst[o], dst[o+1], dst[o+2] = row[4*x], row[4*x+1], row[4*x+2]
				o += 3
			}
		}
	default:
		toRGBGeneric(dst, img)
	}
}

// toRGBGeneric converts any image through 8-bit non-premultiplied RGBA, dropping alpha.
func toRGBGeneric(dst []uint8, img image.Image) {
	b := img.Bounds()
	o := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			dst[o], dst[o+1], dst[o+2] = c.R, c.G, c.B
			o += 3
		}
	}
}

// readNPZ reads arr_0 of an .npz as uint8 [N, H, W, 3].
func readNPZ(path string, size int64) (im *Images, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close()
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: not a folder or a readable .npz (zip) file (truncated?): %w", path, err)
	}
	var entry *zip.File
	var keys []string
	for _, e := range zr.File {
		keys = append(keys, strings.TrimSuffix(e.Name, ".npy"))
		if e.Name == "arr_0.npy" {
			entry = e
		}
	}
	if entry == nil {
		return nil, fmt.Errorf("datasets: %s: no arr_0 in the .npz (it holds %s)", path, strings.Join(keys, ", "))
	}
	rc, err := entry.Open()
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: arr_0: %w", path, err)
	}
	defer rc.Close()
	hdr, err := readNpyHeader(rc)
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: arr_0: %w", path, err)
	}
	shape := hdr.Descr.Shape
	switch t := hdr.Descr.Type; {
	case t != "|u1" && t != "<u1" && t != ">u1" && t != "u1":
		return nil, fmt.Errorf("datasets: %s: arr_0 has dtype %q, want uint8 (|u1) pixels", path, t)
	case len(shape) != 4 || shape[3] != 3:
		return nil, fmt.Errorf("datasets: %s: arr_0 has shape %v, want [N, H, W, 3]", path, shape)
	case hdr.Descr.Fortran:
		return nil, fmt.Errorf("datasets: %s: arr_0 is in Fortran order, want C order (np.ascontiguousarray)", path)
	case shape[0] <= 0 || shape[1] <= 0 || shape[2] <= 0:
		return nil, fmt.Errorf("datasets: %s: arr_0 has shape %v, want at least one non-empty image", path, shape)
	}
	n := int64(shape[0]) * int64(shape[1]) * int64(shape[2]) * 3
	// The zip directory's size bounds the allocation before a byte is read: a corrupt header must
	// not ask for terabytes.
	if shape[1] > 1<<16 || shape[2] > 1<<16 || n > int64(entry.UncompressedSize64) {
		return nil, fmt.Errorf("datasets: %s: arr_0 shape %v needs %d bytes, but the entry holds %d (truncated?)", path, shape, n, entry.UncompressedSize64)
	}
	im = &Images{N: shape[0], H: shape[1], W: shape[2], Pix: make([]uint8, n), Names: make([]string, shape[0])}
	if got, err := io.ReadFull(rc, im.Pix); err != nil {
		return nil, fmt.Errorf("datasets: %s: arr_0: read %d of %d bytes of pixels (truncated?): %w", path, got, n, err)
	}
	for i := range im.Names {
		im.Names[i] = fmt.Sprintf("arr_0[%d]", i)
	}
	return im, nil
}

// readNpyHeader parses an .npy header and leaves r at the first data byte. The header length is
// checked before the parser allocates it, and a parser panic on a malformed header becomes an error.
func readNpyHeader(r io.Reader) (hdr npy.Header, err error) {
	var pre [12]byte
	n, err := io.ReadFull(r, pre[:])
	if err != nil && n < 10 {
		return hdr, fmt.Errorf("truncated .npy header (%d bytes)", n)
	}
	var hdrLen int
	switch {
	case string(pre[:6]) != string(npy.Magic[:]):
		return hdr, fmt.Errorf("not an .npy array (no \x93NUMPY magic)")
	case pre[6] == 1:
		hdrLen = int(binary.LittleEndian.Uint16(pre[8:10]))
	case n == 12:
		hdrLen = int(binary.LittleEndian.Uint32(pre[8:12]))
	}
	if hdrLen > 1<<20 {
		return hdr, fmt.Errorf(".npy header claims %d bytes, want at most 1 MiB", hdrLen)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed .npy header: %v", p)
		}
	}()
	nr, err := npy.NewReader(io.MultiReader(bytes.NewReader(pre[:n]), r))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return hdr, fmt.Errorf("truncated .npy header")
		}
		return hdr, fmt.Errorf("not an .npy array: %w", err)
	}
	return nr.Header, nil
}
