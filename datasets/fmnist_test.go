package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idx encodes an IDX unsigned-byte file.
func idx(magic uint32, dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		_ = binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// smallSet is 3 images of 2×4 pixels (pixel value = 10·image + position) with labels 7, 0, 9.
func smallSet() (images, labels []byte) {
	pix := make([]byte, 3*2*4)
	for i := range pix {
		pix[i] = byte(10*(i/8) + i%8)
	}
	return idx(0x803, []uint32{3, 2, 4}, pix), idx(0x801, []uint32{3}, []byte{7, 0, 9})
}

func checkSmall(t *testing.T, m *MNIST) {
	t.Helper()
	if m.N != 3 || m.H != 2 || m.W != 4 || len(m.Pix) != 24 || !slices.Equal(m.Labels, []uint8{7, 0, 9}) {
		t.Fatalf("got N=%d H=%d W=%d %d pixels labels %v", m.N, m.H, m.W, len(m.Pix), m.Labels)
	}
	if !slices.Equal(m.Image(2), []uint8{20, 21, 22, 23, 24, 25, 26, 27}) {
		t.Errorf("image 2 = %v", m.Image(2))
	}
	rgb := m.RGB()
	if rgb.N != 3 || len(rgb.Pix) != 72 || !slices.Equal(rgb.Image(2)[:6], []uint8{20, 20, 20, 21, 21, 21}) {
		t.Errorf("RGB: N=%d %d bytes, image 2 starts %v", rgb.N, len(rgb.Pix), rgb.Image(2)[:6])
	}
}

func TestFashionMNISTPlainAndGzip(t *testing.T) {
	images, labels := smallSet()
	plain := t.TempDir()
	write(t, plain, "t10k-images-idx3-ubyte", images)
	write(t, plain, "t10k-labels-idx1-ubyte", labels)
	compressed := t.TempDir()
	write(t, compressed, "train-images-idx3-ubyte.gz", gz(t, images))
	write(t, compressed, "train-labels-idx1-ubyte.gz", gz(t, labels))
	for _, c := range []struct{ dir, split string }{{plain, "test"}, {plain, "t10k"}, {compressed, "train"}} {
		m, err := FashionMNIST(c.dir, c.split)
		if err != nil {
			t.Fatalf("%s %s: %v", c.dir, c.split, err)
		}
		checkSmall(t, m)
	}
	// Mixed: gzip images, plain labels; and content, not the suffix, decides compression.
	mixed := t.TempDir()
	write(t, mixed, "t10k-images-idx3-ubyte", gz(t, images))
	write(t, mixed, "t10k-labels-idx1-ubyte.gz", labels)
	m, err := FashionMNIST(mixed, "test")
	if err != nil {
		t.Fatal(err)
	}
	checkSmall(t, m)
}

func TestFashionMNISTErrors(t *testing.T) {
	images, labels := smallSet()
	type file struct {
		name string
		data []byte
	}
	for _, c := range []struct {
		name  string
		files []file
		split string
		want  []string
	}{
		{"bad split", nil, "val", []string{`split "val"`, "train or test"}},
		{"missing images", []file{{"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"neither t10k-images-idx3-ubyte nor t10k-images-idx3-ubyte.gz", FashionMNISTPackage}},
		{"bad magic", []file{{"t10k-images-idx3-ubyte", idx(0x801, []uint32{3, 2, 4}, make([]byte, 24))}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"t10k-images-idx3-ubyte: magic number 0x00000801", "want 0x00000803"}},
		{"labels as images", []file{{"t10k-images-idx3-ubyte", images}, {"t10k-labels-idx1-ubyte", images}}, "test",
			[]string{"t10k-labels-idx1-ubyte: magic number 0x00000803", "want 0x00000801"}},
		{"truncated header", []file{{"t10k-images-idx3-ubyte", images[:10]}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"t10k-images-idx3-ubyte: truncated header: 10 of 16 bytes"}},
		{"truncated data", []file{{"t10k-images-idx3-ubyte", images[:len(images)-1]}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"t10k-images-idx3-ubyte: truncated: 23 of the 24 data bytes", "[3 2 4]"}},
		{"truncated gzip", []file{{"t10k-images-idx3-ubyte.gz", gz(t, images)[:30]}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"t10k-images-idx3-ubyte.gz: truncated"}},
		{"trailing data", []file{{"t10k-images-idx3-ubyte", append(slices.Clone(images), 0)}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"more data than"}},
		{"count mismatch", []file{{"t10k-images-idx3-ubyte", images}, {"t10k-labels-idx1-ubyte", idx(0x801, []uint32{2}, []byte{1, 2})}}, "test",
			[]string{"holds 3 images", "holds 2 labels"}},
		{"bad label", []file{{"t10k-images-idx3-ubyte", images}, {"t10k-labels-idx1-ubyte", idx(0x801, []uint32{3}, []byte{1, 12, 2})}}, "test",
			[]string{"label 12 of image 1, want 0..9"}},
		{"huge header", []file{{"t10k-images-idx3-ubyte", idx(0x803, []uint32{1 << 30, 1 << 30, 1 << 30}, nil)}, {"t10k-labels-idx1-ubyte", labels}}, "test",
			[]string{"corrupt header"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				write(t, dir, f.name, f.data)
			}
			_, err := FashionMNIST(dir, c.split)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if errors.Is(err, ErrNoFashionMNIST) {
				t.Errorf("error %q claims the dataset is not installed", err)
			}
		})
	}
}

func TestFashionMNISTMissingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nowhere")
	_, err := FashionMNIST(dir, "train")
	if !errors.Is(err, ErrNoFashionMNIST) {
		t.Fatalf("error %v, want ErrNoFashionMNIST", err)
	}
	for _, s := range []string{dir, FashionMNISTPackage, "make setup"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if _, err := ReadIDXLabels(filepath.Join(dir, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadIDXLabels on a missing file: %v", err)
	}
}

// TestFashionMNISTInstalled reads the real Debian files: 60000 + 10000 images of 28×28 with
// balanced labels (6000 and 1000 per class).
func TestFashionMNISTInstalled(t *testing.T) {
	if _, err := os.Stat(FashionMNISTDir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is missing: install the Debian package %s (`make setup`)", FashionMNISTDir, FashionMNISTPackage)
	}
	for _, c := range []struct {
		split string
		n     int
	}{{"test", 10000}, {"train", 60000}} {
		m, err := FashionMNIST("", c.split)
		if err != nil {
			t.Fatal(err)
		}
		if m.N != c.n || m.H != 28 || m.W != 28 || len(m.Pix) != c.n*28*28 || len(m.Labels) != c.n {
			t.Fatalf("%s: N=%d %d×%d, %d pixels, %d labels", c.split, m.N, m.H, m.W, len(m.Pix), len(m.Labels))
		}
		var count [10]int
		for _, l := range m.Labels {
			count[l]++
		}
		for k, v := range count {
			if v != c.n/10 {
				t.Errorf("%s: class %d has %d images, want %d", c.split, k, v, c.n/10)
			}
		}
		// The first test image is an ankle boot (label 9) whose corners are background.
		if c.split == "test" && (m.Labels[0] != 9 || m.Image(0)[0] != 0) {
			t.Errorf("test image 0: label %d, first pixel %d", m.Labels[0], m.Image(0)[0])
		}
	}
}

func TestParseFashionMNISTSpec(t *testing.T) {
	for _, c := range []struct {
		spec  string
		split string
		n     int
	}{{"fmnist:test", "test", 0}, {"fmnist:train", "train", 0}, {"fmnist:test:200", "test", 200}, {"fmnist:train:1", "train", 1}} {
		split, n, err := ParseFashionMNISTSpec(c.spec)
		if err != nil || split != c.split || n != c.n {
			t.Errorf("%q: %q %d %v, want %q %d", c.spec, split, n, err, c.split, c.n)
		}
	}
	for _, c := range []struct{ spec, want string }{
		{"fmnist:val:10", `split "val"`}, {"fmnist:t10k", `split "t10k"`}, {"fmnist:", `split ""`}, {"mnist:test", "no fmnist: prefix"},
		{"fmnist:test:0", `count "0"`}, {"fmnist:test:-3", `count "-3"`}, {"fmnist:test:+3", `count "+3"`},
		{"fmnist:test:", `count ""`}, {"fmnist:test:5:6", `count "5:6"`}, {"fmnist:test:ten", `count "ten"`},
	} {
		_, _, err := ParseFashionMNISTSpec(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fmnist:SPLIT:N") {
			t.Errorf("%q: error %v, want one naming %q and the syntax", c.spec, err, c.want)
		}
	}
}

// The padded set keeps the IDX pixels 2 px in from every side and 0 around them.
func checkPadded(t *testing.T, im *Images, m *MNIST, n int) {
	t.Helper()
	if im.N != n || im.H != m.H+4 || im.W != m.W+4 || len(im.Pix) != n*im.H*im.W*3 {
		t.Fatalf("N=%d %d×%d %d bytes, want %d images of %d×%d", im.N, im.W, im.H, len(im.Pix), n, m.W+4, m.H+4)
	}
	for i := range n {
		img, src := im.Image(i), m.Image(i)
		for y := range im.H {
			for x := range im.W {
				want := uint8(0)
				if y >= 2 && y < m.H+2 && x >= 2 && x < m.W+2 {
					want = src[(y-2)*m.W+x-2]
				}
				if p := img[(y*im.W+x)*3:]; p[0] != want || p[1] != want || p[2] != want {
					t.Fatalf("image %d pixel (%d, %d) = %v, want gray %d", i, x, y, p[:3], want)
				}
			}
		}
	}
}

func TestReadFashionMNISTSetSmall(t *testing.T) {
	images, labels := smallSet()
	dir := t.TempDir()
	write(t, dir, "t10k-images-idx3-ubyte", images)
	write(t, dir, "t10k-labels-idx1-ubyte", labels)
	m, err := FashionMNIST(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	im, l, err := ReadFashionMNISTSet(dir, "fmnist:test:2")
	if err != nil {
		t.Fatal(err)
	}
	checkPadded(t, im, m, 2)
	if !slices.Equal(l, []uint8{7, 0}) {
		t.Errorf("labels %v, want [7 0]", l)
	}
	if im, l, err = ReadFashionMNISTSet(dir, "fmnist:test"); err != nil || im.N != 3 || len(l) != 3 {
		t.Errorf("fmnist:test: %v", err)
	}
	for _, c := range []struct{ spec, want string }{
		{"fmnist:test:4", "asks for 4 images, the test split holds 3"},
		{"fmnist:train:1", "fmnist:train:1: fashion-mnist: " + dir + " has neither train-images-idx3-ubyte"},
		{"fmnist:val:10", `split "val"`},
	} {
		if _, _, err := ReadFashionMNISTSet(dir, c.spec); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line containing %q", c.spec, err, c.want)
		}
	}
	nowhere := filepath.Join(dir, "nowhere")
	if _, _, err := ReadFashionMNISTSet(nowhere, "fmnist:test:1"); !errors.Is(err, ErrNoFashionMNIST) ||
		!strings.Contains(err.Error(), FashionMNISTPackage) || !strings.Contains(err.Error(), nowhere) {
		t.Errorf("missing folder: %v", err)
	}
}

// TestReadFashionMNISTSetInstalled checks the padding on the real files: the first test image is
// the IDX image surrounded by 2 px of 0, and its label is the ankle boot's.
func TestReadFashionMNISTSetInstalled(t *testing.T) {
	if _, err := os.Stat(FashionMNISTDir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is missing: install the Debian package %s (`make setup`)", FashionMNISTDir, FashionMNISTPackage)
	}
	m, err := FashionMNIST("", "test")
	if err != nil {
		t.Fatal(err)
	}
	im, l, err := ReadFashionMNISTSet("", "fmnist:test:5")
	if err != nil {
		t.Fatal(err)
	}
	if im.H != 32 || im.W != 32 || !slices.Equal(l, m.Labels[:5]) || l[0] != 9 {
		t.Fatalf("%d×%d, labels %v, want 32×32 and %v", im.W, im.H, l, m.Labels[:5])
	}
	checkPadded(t, im, m, 5)
}
