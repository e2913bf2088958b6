package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FashionMNISTDir is where Debian's dataset-fashion-mnist package installs the IDX files
// (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
// t10k-labels-idx1-ubyte.gz).
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTPackage is the Debian package that provides FashionMNISTDir (`make setup` installs it).
const FashionMNISTPackage = "dataset-fashion-mnist"

// ErrNoFashionMNIST is wrapped by FashionMNIST's error when the folder does not exist, so that
// callers (tests) can tell "not installed" from a broken installation.
var ErrNoFashionMNIST = errors.New("Fashion-MNIST is not installed")

// MNIST is an MNIST-format labelled gray image set (Fashion-MNIST is one).
type MNIST struct {
	N, H, W int
	Pix     []uint8 // N×H×W gray, row-major, 0 = background
	Labels  []uint8 // N class labels, 0..9
}

// Image returns image i's H×W pixels (a view into Pix).
func (m *MNIST) Image(i int) []uint8 {
	n := m.H * m.W
	return m.Pix[i*n : (i+1)*n]
}

// RGB returns the images with the gray value repeated in three channels, the layout that
// metrics.Extractor implementations take.
func (m *MNIST) RGB() *Images {
	pix := make([]uint8, 3*len(m.Pix))
	for i, v := range m.Pix {
		pix[3*i], pix[3*i+1], pix[3*i+2] = v, v, v
	}
	return &Images{N: m.N, H: m.H, W: m.W, Pix: pix}
}

// IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// maxIDXBytes bounds the data size a header may declare, so that a corrupt header is reported
// instead of attempting a huge allocation (Fashion-MNIST's training images are 47 MB).
const maxIDXBytes = 1 << 32

// FashionMNIST reads one split ("train", or "test" / "t10k") of Fashion-MNIST from dir (""
// means FashionMNISTDir). Each file is <prefix>-images-idx3-ubyte or <prefix>-labels-idx1-ubyte,
// plain or gzip-compressed with a .gz suffix (the plain file wins when both exist); compression
// is recognised from the content.
func FashionMNIST(dir, split string) (*MNIST, error) {
	if dir == "" {
		dir = FashionMNISTDir
	}
	var prefix string
	switch split {
	case "train":
		prefix = "train"
	case "test", "t10k":
		prefix = "t10k"
	default:
		return nil, fmt.Errorf("fashion-mnist: split %q, want train or test (t10k)", split)
	}
	if st, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; install the Debian package %s (`make setup`) or name the folder holding the IDX files",
			ErrNoFashionMNIST, dir, FashionMNISTPackage)
	} else if err != nil {
		return nil, fmt.Errorf("fashion-mnist: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("fashion-mnist: %s is not a folder", dir)
	}
	imgPath, err := findIDX(dir, prefix+"-images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	lblPath, err := findIDX(dir, prefix+"-labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	pix, n, h, w, err := ReadIDXImages(imgPath)
	if err != nil {
		return nil, err
	}
	labels, err := ReadIDXLabels(lblPath)
	if err != nil {
		return nil, err
	}
	if len(labels) != n {
		return nil, fmt.Errorf("fashion-mnist: %s holds %d images but %s holds %d labels, want one label per image", imgPath, n, lblPath, len(labels))
	}
	for i, l := range labels {
		if l > 9 {
			return nil, fmt.Errorf("fashion-mnist: %s: label %d of image %d, want 0..9", lblPath, l, i)
		}
	}
	return &MNIST{N: n, H: h, W: w, Pix: pix, Labels: labels}, nil
}

// findIDX returns dir/name or, failing that, dir/name.gz.
func findIDX(dir, name string) (string, error) {
	for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".gz")} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("fashion-mnist: %w", err)
		}
	}
	return "", fmt.Errorf("fashion-mnist: %s has neither %s nor %s.gz (is %s fully installed?): %w", dir, name, name, FashionMNISTPackage, fs.ErrNotExist)
}

// ReadIDXImages reads an IDX3 unsigned-byte image file (plain or gzip): n images of h×w pixels.
func ReadIDXImages(path string) (pix []uint8, n, h, w int, err error) {
	dims, data, err := readIDX(path, idxImagesMagic, "images [N, H, W]")
	if err != nil {
		return nil, 0, 0, 0, err
	}
	return data, dims[0], dims[1], dims[2], nil
}

// ReadIDXLabels reads an IDX1 unsigned-byte label file (plain or gzip).
func ReadIDXLabels(path string) ([]uint8, error) {
	_, data, err := readIDX(path, idxLabelsMagic, "labels [N]")
	return data, err
}

// readIDX checks an IDX file's magic number and reads exactly the bytes its dimensions declare.
func readIDX(path string, magic uint32, what string) (dims []int, data []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("idx: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	compressed := ""
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("idx: %s: gzip header: %w", path, err)
		}
		defer zr.Close()
		r, compressed = zr, " (after gunzip)"
	}
	rank := int(magic & 0xff)
	hdr := make([]byte, 4+4*rank)
	if k, err := io.ReadFull(r, hdr); err != nil {
		return nil, nil, fmt.Errorf("idx: %s: truncated header: %d of %d bytes%s, want an IDX file of %s (%v)", path, k, len(hdr), compressed, what, err)
	}
	if got := binary.BigEndian.Uint32(hdr); got != magic {
		return nil, nil, fmt.Errorf("idx: %s: magic number 0x%08x%s, want 0x%08x (IDX unsigned-byte %s)", path, got, compressed, magic, what)
	}
	size := uint64(1)
	for i := range rank {
		d := binary.BigEndian.Uint32(hdr[4+4*i:])
		dims = append(dims, int(d))
		size *= uint64(d)
		if size > maxIDXBytes {
			return nil, nil, fmt.Errorf("idx: %s: dimensions %v declare more than %d bytes; corrupt header?", path, dims, uint64(maxIDXBytes))
		}
	}
	var buf bytes.Buffer
	buf.Grow(int(min(size+1, 1<<26)))
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(size)+1)); errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil, fmt.Errorf("idx: %s: truncated gzip stream: it ends after %d of the %d data bytes that %s %v need", path, buf.Len(), size, what, dims)
	} else if err != nil {
		return nil, nil, fmt.Errorf("idx: %s: reading %s %v: %w", path, what, dims, err)
	}
	switch got := uint64(buf.Len()); {
	case got < size:
		return nil, nil, fmt.Errorf("idx: %s: truncated: %d of the %d data bytes that %s %v need%s", path, got, size, what, dims, compressed)
	case got > size:
		return nil, nil, fmt.Errorf("idx: %s: more data than %s %v declare (%d bytes)%s", path, what, dims, size, compressed)
	}
	return dims, buf.Bytes(), nil
}

// FashionMNISTSpecPrefix starts an image-set argument that names real Fashion-MNIST images.
const FashionMNISTSpecPrefix = "fmnist:"

// ParseFashionMNISTSpec splits "fmnist:SPLIT" or "fmnist:SPLIT:N" into the split (train or test) and the count N (0: all).
func ParseFashionMNISTSpec(spec string) (split string, n int, err error) {
	bad := func(why string) error {
		return fmt.Errorf("fashion-mnist set %q: %s; want fmnist:SPLIT or fmnist:SPLIT:N (SPLIT train or test, N ≥ 1 the first N images)", spec, why)
	}
	rest, ok := strings.CutPrefix(spec, FashionMNISTSpecPrefix)
	if !ok {
		return "", 0, bad("no fmnist: prefix")
	}
	split, count, hasCount := strings.Cut(rest, ":")
	if split != "train" && split != "test" {
		return "", 0, bad(fmt.Sprintf("split %q", split))
	}
	if !hasCount {
		return split, 0, nil
	}
	// Atoi alone would take "+5"; a count is plain digits.
	n, err = strconv.Atoi(count)
	if err != nil || n < 1 || strings.TrimLeft(count, "0123456789") != "" {
		return "", 0, bad(fmt.Sprintf("count %q", count))
	}
	return split, n, nil
}

// ReadFashionMNISTSet reads the set a "fmnist:SPLIT[:N]" spec names from dir ("" means FashionMNISTDir) as 32×32 RGB images with their labels.
//
// The 28×28 images get 2 px of background (0) on every side, tools/fmnist_common.py's padding,
// so that the classifier sees the pixels it was trained on; gray is repeated in R, G and B.
func ReadFashionMNISTSet(dir, spec string) (*Images, []uint8, error) {
	split, n, err := ParseFashionMNISTSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	m, err := FashionMNIST(dir, split)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", spec, err)
	}
	if n > m.N {
		return nil, nil, fmt.Errorf("%s: asks for %d images, the %s split holds %d", spec, n, split, m.N)
	}
	if n == 0 {
		n = m.N
	}
	m = &MNIST{N: n, H: m.H, W: m.W, Pix: m.Pix[:n*m.H*m.W], Labels: m.Labels[:n]}
	return m.Pad(2).RGB(), m.Labels, nil
}

// Pad returns the images with p pixels of background (0) added on every side.
func (m *MNIST) Pad(p int) *MNIST {
	h, w := m.H+2*p, m.W+2*p
	out := &MNIST{N: m.N, H: h, W: w, Pix: make([]uint8, m.N*h*w), Labels: m.Labels}
	for i := range m.N {
		src, dst := m.Image(i), out.Image(i)
		for y := range m.H {
			copy(dst[(y+p)*w+p:], src[y*m.W:(y+1)*m.W])
		}
	}
	return out
}
