package datasets

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pattern gives each pixel a distinct colour, so a swapped axis or channel shows.
func pattern(x, y, k int) (uint8, uint8, uint8) {
	return uint8(10*x + k), uint8(20*y + k), uint8(x + y + 100*k)
}

func TestReadFolder(t *testing.T) {
	dir := t.TempDir()
	const w, h = 4, 3
	rgb := image.NewNRGBA(image.Rect(0, 0, w, h))
	gray := image.NewGray(image.Rect(0, 0, w, h))
	alpha := image.NewNRGBA(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.NRGBA{1, 2, 3, 255}, color.NRGBA{200, 100, 50, 128}})
	for y := range h {
		for x := range w {
			r, g, b := pattern(x, y, 0)
			rgb.SetNRGBA(x, y, color.NRGBA{r, g, b, 255})
			gray.SetGray(x, y, color.Gray{uint8(7*x + 30*y)})
			r, g, b = pattern(x, y, 1)
			alpha.SetNRGBA(x, y, color.NRGBA{r, g, b, uint8(40 * x)}) // alpha 0 included
			pal.SetColorIndex(x, y, uint8((x+y)%2))
		}
	}
	// Written out of order: the reader must sort by name.
	writePNG(t, filepath.Join(dir, "c_alpha.png"), alpha)
	writePNG(t, filepath.Join(dir, "a_rgb.png"), rgb)
	writePNG(t, filepath.Join(dir, "b_gray.PNG"), gray)
	writePNG(t, filepath.Join(dir, "d_pal.png"), pal)
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, rgb, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "e_photo.jpg"), jb.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("skipped"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub.png"), 0o755)

	im, err := ReadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	if im.N != 5 || im.H != h || im.W != w || len(im.Pix) != 5*h*w*3 {
		t.Fatalf("got %d images %d×%d (%d bytes), want 5 of %d×%d", im.N, im.W, im.H, len(im.Pix), w, h)
	}
	if got := strings.Join(im.Names, " "); got != "a_rgb.png b_gray.PNG c_alpha.png d_pal.png e_photo.jpg" {
		t.Errorf("names %q, want file-name order", got)
	}
	for y := range h {
		for x := range w {
			px := func(i int) [3]uint8 {
				p := im.Image(i)[(y*w+x)*3:]
				return [3]uint8{p[0], p[1], p[2]}
			}
			r, g, b := pattern(x, y, 0)
			if got := px(0); got != [3]uint8{r, g, b} {
				t.Errorf("rgb (%d,%d) = %v, want %v", x, y, got, [3]uint8{r, g, b})
			}
			v := uint8(7*x + 30*y)
			if got := px(1); got != [3]uint8{v, v, v} {
				t.Errorf("gray (%d,%d) = %v, want %v", x, y, got, [3]uint8{v, v, v})
			}
			r, g, b = pattern(x, y, 1)
			if got := px(2); x > 0 && got != [3]uint8{r, g, b} {
				t.Errorf("alpha (%d,%d) = %v, want the un-premultiplied colour %v", x, y, got, [3]uint8{r, g, b})
			}
			want := [3]uint8{1, 2, 3}
			if (x+y)%2 == 1 {
				want = [3]uint8{200, 100, 50}
			}
			if got := px(3); got != want {
				t.Errorf("paletted (%d,%d) = %v, want %v", x, y, got, want)
			}
			r, g, b = pattern(x, y, 0)
			got := px(4)
			for c, wv := range []uint8{r, g, b} {
				if d := int(got[c]) - int(wv); d > 40 || d < -40 {
					t.Errorf("jpeg (%d,%d) = %v, want about %v", x, y, got, [3]uint8{r, g, b})
					break
				}
			}
		}
	}
}

func TestReadFolderErrors(t *testing.T) {
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "readme.md"), nil, 0o644)
	if _, err := ReadImages(empty); err == nil || !strings.Contains(err.Error(), "no .png, .jpg or .jpeg files") || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty folder: %v", err)
	}

	mixed := t.TempDir()
	for i, s := range []int{8, 8, 5, 8, 6} {
		writePNG(t, filepath.Join(mixed, fmt.Sprintf("%02d.png", i)), image.NewGray(image.Rect(0, 0, s, s)))
	}
	_, err := ReadImages(mixed)
	if err == nil || !strings.Contains(err.Error(), "02.png is 5×5 pixels") || !strings.Contains(err.Error(), "00.png (the first file) is 8×8") {
		t.Errorf("mixed sizes: %v, want the first differing file (02.png) named", err)
	}

	broken := t.TempDir()
	writePNG(t, filepath.Join(broken, "0.png"), image.NewGray(image.Rect(0, 0, 2, 2)))
	os.WriteFile(filepath.Join(broken, "1.png"), []byte("not a png at all"), 0o644)
	if _, err := ReadImages(broken); err == nil || !strings.Contains(err.Error(), "1.png: not a readable PNG or JPEG") {
		t.Errorf("unreadable file: %v", err)
	}

	if _, err := ReadImages(filepath.Join(broken, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing path: %v", err)
	}
}

// npyBytes encodes an .npy v1.0 array with a literal header dict.
func npyBytes(descr, shape string, fortran bool, data []byte) []byte {
	order := "False"
	if fortran {
		order = "True"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, shape)
	for (10+len(dict)+1)%64 != 0 {
		dict += " "
	}
	dict += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(dict)))
	b.WriteString(dict)
	b.Write(data)
	return b.Bytes()
}

func writeNPZ(t *testing.T, path string, entries map[string][]byte, compress bool) {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, data := range entries {
		method := zip.Store
		if compress {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadNPZ(t *testing.T) {
	dir := t.TempDir()
	pix := make([]byte, 2*3*4*3)
	for i := range pix {
		pix[i] = byte(i * 7)
	}
	for _, compress := range []bool{false, true} {
		path := filepath.Join(dir, fmt.Sprintf("samples_%t.npz", compress))
		writeNPZ(t, path, map[string][]byte{
			"arr_0.npy": npyBytes("|u1", "(2, 3, 4, 3)", false, pix),
			"arr_1.npy": npyBytes("<i8", "(2,)", false, make([]byte, 16)),
		}, compress)
		im, err := ReadImages(path)
		if err != nil {
			t.Fatal(err)
		}
		if im.N != 2 || im.H != 3 || im.W != 4 || !bytes.Equal(im.Pix, pix) {
			t.Errorf("compress=%t: got %d×%d×%d, pixels equal %t", compress, im.N, im.H, im.W, bytes.Equal(im.Pix, pix))
		}
		if im.Names[1] != "arr_0[1]" {
			t.Errorf("names %v", im.Names)
		}
	}
}

func TestReadNPZErrors(t *testing.T) {
	dir := t.TempDir()
	pix := make([]byte, 2*3*4*3)
	good := npyBytes("|u1", "(2, 3, 4, 3)", false, pix)
	cases := []struct {
		name    string
		entries map[string][]byte
		want    string
	}{
		{"dtype", map[string][]byte{"arr_0.npy": npyBytes("<f4", "(2, 3, 4, 3)", false, make([]byte, 4*len(pix)))}, `dtype "<f4", want uint8`},
		{"rank", map[string][]byte{"arr_0.npy": npyBytes("|u1", "(6, 4, 3)", false, pix)}, "shape [6 4 3], want [N, H, W, 3]"},
		{"channels", map[string][]byte{"arr_0.npy": npyBytes("|u1", "(2, 3, 12, 1)", false, pix)}, "want [N, H, W, 3]"},
		{"fortran", map[string][]byte{"arr_0.npy": npyBytes("|u1", "(2, 3, 4, 3)", true, pix)}, "Fortran order"},
		{"empty", map[string][]byte{"arr_0.npy": npyBytes("|u1", "(0, 3, 4, 3)", false, nil)}, "at least one non-empty image"},
		{"short data", map[string][]byte{"arr_0.npy": good[:len(good)-5]}, "truncated"},
		{"no arr_0", map[string][]byte{"images.npy": good}, "no arr_0 in the .npz (it holds images)"},
		{"not npy", map[string][]byte{"arr_0.npy": []byte("hello, world")}, "not an .npy array"},
		{"bad header", map[string][]byte{"arr_0.npy": []byte("\x93NUMPY\x01\x00\x04\x00abc")}, "arr_0"},
		{"huge header", map[string][]byte{"arr_0.npy": []byte("\x93NUMPY\x02\x00\xff\xff\xff\x7f")}, "at most 1 MiB"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".npz")
		writeNPZ(t, path, c.entries, false)
		_, err := ReadImages(path)
		t.Logf("%s: %v", c.name, err)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming %s and saying %q", c.name, err, path, c.want)
		}
	}

	// A file cut short loses the zip directory at its end.
	full := filepath.Join(dir, "full.npz")
	writeNPZ(t, full, map[string][]byte{"arr_0.npy": good}, false)
	b, _ := os.ReadFile(full)
	cut := filepath.Join(dir, "cut.npz")
	os.WriteFile(cut, b[:len(b)/2], 0o644)
	if _, err := ReadImages(cut); err == nil || !strings.Contains(err.Error(), "not a folder or a readable .npz") {
		t.Errorf("truncated npz: %v", err)
	}
	text := filepath.Join(dir, "list.txt")
	os.WriteFile(text, []byte("a.png\n"), 0o644)
	if _, err := ReadImages(text); err == nil || !strings.Contains(err.Error(), "not a folder or a readable .npz") {
		t.Errorf("text file: %v", err)
	}
}
