package metrics

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"crypto/sha256"
	"github.com/sbinet/npyio/npy"
	"gonum.org/v1/gonum/mat"
)

// RefStats is a reference statistics file: pytorch-fid's (mu, sigma) or an ADM reference batch's (mu, sigma, mu_s, sigma_s, arr_0).
type RefStats struct {
	Mu     []float64     // mean of the pool_3 features (npz key "mu")
	Sigma  *mat.SymDense // their covariance (npz key "sigma")
	MuS    []float64     // optional sFID mean of the spatial features (npz key "mu_s")
	SigmaS *mat.SymDense // optional sFID covariance, present exactly when MuS is (npz key "sigma_s")
	Images *Images       // optional images (npz key "arr_0"): written by WriteRefStats, never filled by ReadRefStats (see ReadImages)
}

// Images is a batch of uint8 images in NHWC layout, the "arr_0" array of DiT/ADM sample and reference batches.
type Images struct {
	N, H, W, C int
	Pix        []uint8 // len N·H·W·C, row-major NHWC
}

// symmetryTol is the largest relative asymmetry accepted in a stored covariance (float32 files round each entry independently).
const symmetryTol = 1e-5

// maxNpyHeader bounds the npy header length read from a file, so a corrupt length cannot trigger a huge allocation.
const maxNpyHeader = 1 << 20

// ReadRefStats reads mu and sigma (and mu_s, sigma_s when present) from a pytorch-fid or ADM .npz file; float32 and float64 arrays are accepted.
func ReadRefStats(path string) (*RefStats, error) {
	z, closer, err := openNpz(path)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	rs := &RefStats{}
	if rs.Mu, rs.Sigma, err = readMeanCov(path, z, "mu", "sigma", true); err != nil {
		return nil, err
	}
	if rs.MuS, rs.SigmaS, err = readMeanCov(path, z, "mu_s", "sigma_s", false); err != nil {
		return nil, err
	}
	return rs, nil
}

// ReadImages reads the uint8 NHWC "arr_0" array of an .npz sample or reference batch.
func ReadImages(path string) (*Images, error) {
	z, closer, err := openNpz(path)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	f := npzEntry(z, "arr_0")
	if f == nil {
		return nil, fmt.Errorf("metrics: %s: field %q missing, want a uint8 [N,H,W,C] image array", path, "arr_0")
	}
	a, err := openArray(path, "arr_0", f)
	if err != nil {
		return nil, err
	}
	defer a.rc.Close()
	if a.kind != 'u' || a.size != 1 {
		return nil, a.errorf("dtype %s, want uint8 (|u1)", a.descr)
	}
	if len(a.shape) != 4 || a.fortran {
		return nil, a.errorf("shape %v (fortran_order=%v), want a C-order [N,H,W,C] array", a.shape, a.fortran)
	}
	im := &Images{N: a.shape[0], H: a.shape[1], W: a.shape[2], C: a.shape[3]}
	im.Pix = make([]uint8, a.n)
	if _, err := io.ReadFull(a.rc, im.Pix); err != nil {
		return nil, a.errorf("data shorter than shape %v: %v", a.shape, err)
	}
	if err := a.finish(); err != nil {
		return nil, err
	}
	return im, nil
}

// WriteRefStats writes rs as an uncompressed .npz (like np.savez) with float64 arrays, replacing path atomically.
func WriteRefStats(path string, rs *RefStats) error {
	if err := checkRefStats(path, rs); err != nil {
		return err
	}
	return writeNpz(path, func(z *zip.Writer) error {
		if err := writeNpyEntry(z, "mu", rs.Mu); err != nil {
			return err
		}
		if err := writeNpyEntry(z, "sigma", denseOf(rs.Sigma)); err != nil {
			return err
		}
		if rs.MuS != nil {
			if err := writeNpyEntry(z, "mu_s", rs.MuS); err != nil {
				return err
			}
			if err := writeNpyEntry(z, "sigma_s", denseOf(rs.SigmaS)); err != nil {
				return err
			}
		}
		if rs.Images != nil {
			return writeImagesEntry(z, rs.Images)
		}
		return nil
	})
}

// WriteImages writes im as the only array ("arr_0") of an uncompressed .npz, the sample-batch format the ADM evaluator reads.
func WriteImages(path string, im *Images) error {
	if err := checkImages(im); err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	return writeNpz(path, func(z *zip.Writer) error { return writeImagesEntry(z, im) })
}

func checkRefStats(path string, rs *RefStats) error {
	if rs == nil {
		return fmt.Errorf("metrics: %s: nil RefStats", path)
	}
	check := func(muKey, sigmaKey string, mu []float64, sigma *mat.SymDense) error {
		if len(mu) == 0 {
			return fmt.Errorf("metrics: %s: field %q empty, want a mean vector", path, muKey)
		}
		if sigma == nil {
			return fmt.Errorf("metrics: %s: field %q missing, want a %d×%d covariance", path, sigmaKey, len(mu), len(mu))
		}
		if n := sigma.SymmetricDim(); n != len(mu) {
			return fmt.Errorf("metrics: %s: field %q is %d×%d, want %d×%d to match %q", path, sigmaKey, n, n, len(mu), len(mu), muKey)
		}
		if err := checkFiniteVec(muKey, mu); err != nil {
			return fmt.Errorf("%w (file %s)", err, path)
		}
		if err := checkFiniteSym(sigmaKey, sigma); err != nil {
			return fmt.Errorf("%w (file %s)", err, path)
		}
		return nil
	}
	if err := check("mu", "sigma", rs.Mu, rs.Sigma); err != nil {
		return err
	}
	if (rs.MuS == nil) != (rs.SigmaS == nil) {
		return fmt.Errorf("metrics: %s: fields \"mu_s\" and \"sigma_s\" must be both set or both nil", path)
	}
	if rs.MuS != nil {
		if err := check("mu_s", "sigma_s", rs.MuS, rs.SigmaS); err != nil {
			return err
		}
	}
	if rs.Images != nil {
		if err := checkImages(rs.Images); err != nil {
			return fmt.Errorf("metrics: %s: %w", path, err)
		}
	}
	return nil
}

func checkImages(im *Images) error {
	if im == nil {
		return errors.New("field \"arr_0\": nil Images")
	}
	if im.N < 0 || im.H < 1 || im.W < 1 || im.C < 1 || len(im.Pix) != im.N*im.H*im.W*im.C {
		return fmt.Errorf("field \"arr_0\": %d pixels bytes for shape [%d,%d,%d,%d]", len(im.Pix), im.N, im.H, im.W, im.C)
	}
	return nil
}

func denseOf(s *mat.SymDense) *mat.Dense {
	n := s.SymmetricDim()
	d := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := s.At(i, j)
			d.Set(i, j, v)
			d.Set(j, i, v)
		}
	}
	return d
}

// writeNpz writes a zip archive with fill to a temporary file, then renames it onto path.
func writeNpz(path string, fill func(*zip.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	z := zip.NewWriter(tmp)
	if err = fill(z); err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	if err = z.Close(); err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("metrics: %s: %w", path, err)
	}
	return nil
}

func createStored(z *zip.Writer, key string) (io.Writer, error) {
	return z.CreateHeader(&zip.FileHeader{Name: key + ".npy", Method: zip.Store})
}

func writeNpyEntry(z *zip.Writer, key string, v any) error {
	w, err := createStored(z, key)
	if err != nil {
		return err
	}
	if err := npy.Write(w, v); err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	return nil
}

// writeImagesEntry writes arr_0 with a hand-made npy 1.0 header (npyHeader).
func writeImagesEntry(z *zip.Writer, im *Images) error {
	w, err := createStored(z, "arr_0")
	if err != nil {
		return err
	}
	if _, err := w.Write(npyHeader("|u1", im.N, im.H, im.W, im.C)); err != nil {
		return err
	}
	_, err = w.Write(im.Pix)
	return err
}

// openNpz opens path as a zip archive.
func openNpz(path string) (*zip.Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	z, err := zip.NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("metrics: %s: not a readable .npz archive (truncated or corrupt?): %v", path, err)
	}
	return z, f, nil
}

// npzEntry finds key as np.savez names it ("key.npy"), or bare.
func npzEntry(z *zip.Reader, key string) *zip.File {
	for _, f := range z.File {
		if f.Name == key+".npy" {
			return f
		}
	}
	for _, f := range z.File {
		if f.Name == key {
			return f
		}
	}
	return nil
}

// npyArray is an open npz entry positioned at the start of its data.
type npyArray struct {
	path, key string
	rc        io.ReadCloser
	descr     string
	kind      byte // 'f', 'u', 'i', ...
	size      int  // bytes per element
	order     binary.ByteOrder
	shape     []int
	fortran   bool
	n         int // number of elements
}

func (a *npyArray) errorf(format string, args ...any) error {
	return fmt.Errorf("metrics: %s: field %q: %s", a.path, a.key, fmt.Sprintf(format, args...))
}

// openArray parses the npy header of f with npyio.
func openArray(path, key string, f *zip.File) (a *npyArray, err error) {
	a = &npyArray{path: path, key: key}
	rc, err := f.Open()
	if err != nil {
		return nil, a.errorf("cannot open entry: %v", err)
	}
	defer func() {
		if err != nil {
			rc.Close()
		}
	}()
	// Check the header length before npyio allocates it.
	var pre [12]byte
	if _, err := io.ReadFull(rc, pre[:10]); err != nil {
		return nil, a.errorf("truncated npy header: %v", err)
	}
	if !bytes.Equal(pre[:6], npy.Magic[:]) {
		return nil, a.errorf("not an npy array (bad magic)")
	}
	var hlen, plen int
	switch pre[6] {
	case 1:
		hlen, plen = int(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2, 3:
		if _, err := io.ReadFull(rc, pre[10:12]); err != nil {
			return nil, a.errorf("truncated npy header: %v", err)
		}
		hlen, plen = int(binary.LittleEndian.Uint32(pre[8:12])), 12
	default:
		return nil, a.errorf("unsupported npy format version %d.%d", pre[6], pre[7])
	}
	if hlen > maxNpyHeader || uint64(hlen) > f.UncompressedSize64 {
		return nil, a.errorf("corrupt npy header length %d", hlen)
	}
	r, err := parseNpyHeader(io.MultiReader(bytes.NewReader(pre[:plen]), io.LimitReader(rc, int64(hlen))))
	if err != nil {
		return nil, a.errorf("bad npy header: %v", err)
	}
	a.rc = rc
	a.descr = r.Header.Descr.Type
	a.fortran = r.Header.Descr.Fortran
	a.shape = r.Header.Descr.Shape
	if err := a.parseDescr(); err != nil {
		return nil, err
	}
	a.n = 1
	for _, d := range a.shape {
		if d < 0 || (d > 0 && a.n > math.MaxInt/d) {
			return nil, a.errorf("bad shape %v", a.shape)
		}
		a.n *= d
	}
	if want := uint64(plen+hlen) + uint64(a.n)*uint64(a.size); f.UncompressedSize64 != want {
		return nil, a.errorf("entry holds %d bytes, want %d for dtype %s and shape %v (truncated?)", f.UncompressedSize64, want, a.descr, a.shape)
	}
	return a, nil
}

// parseNpyHeader runs npyio's header parser, turning its panics on malformed headers into errors.
func parseNpyHeader(r io.Reader) (rd *npy.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			rd, err = nil, fmt.Errorf("malformed header (%v)", p)
		}
	}()
	return npy.NewReader(r)
}

func (a *npyArray) parseDescr() error {
	d := a.descr
	if len(d) < 3 {
		return a.errorf("unsupported dtype %q", d)
	}
	switch d[0] {
	case '<', '|', '=':
		a.order = binary.LittleEndian
	case '>':
		a.order = binary.BigEndian
	default:
		return a.errorf("unsupported dtype %q", d)
	}
	a.kind = d[1]
	switch d[2:] {
	case "1":
		a.size = 1
	case "2":
		a.size = 2
	case "4":
		a.size = 4
	case "8":
		a.size = 8
	default:
		return a.errorf("unsupported dtype %q", d)
	}
	return nil
}

// finish reads to the end of the entry, so that zip verifies its checksum, and closes it.
func (a *npyArray) finish() error {
	var b [1]byte
	n, err := a.rc.Read(b[:])
	for n == 0 && err == nil {
		n, err = a.rc.Read(b[:])
	}
	cerr := a.rc.Close()
	switch {
	case n > 0:
		return a.errorf("data longer than shape %v", a.shape)
	case err != io.EOF:
		return a.errorf("corrupt entry: %v", err)
	case cerr != nil:
		return a.errorf("%v", cerr)
	}
	return nil
}

// readFloats reads a float32 or float64 array of the given rank as float64, in C order.
func readFloats(path string, f *zip.File, key string, rank int) ([]float64, []int, error) {
	a, err := openArray(path, key, f)
	if err != nil {
		return nil, nil, err
	}
	if a.kind != 'f' || (a.size != 4 && a.size != 8) {
		a.rc.Close()
		return nil, nil, a.errorf("dtype %s, want float32 or float64", a.descr)
	}
	if len(a.shape) != rank {
		a.rc.Close()
		return nil, nil, a.errorf("shape %v, want %d dimensions", a.shape, rank)
	}
	out := make([]float64, a.n)
	buf := make([]byte, 1<<16)
	per := len(buf) / a.size
	for i0 := 0; i0 < a.n; i0 += per {
		cnt := min(per, a.n-i0)
		b := buf[:cnt*a.size]
		if _, err := io.ReadFull(a.rc, b); err != nil {
			a.rc.Close()
			return nil, nil, a.errorf("data shorter than shape %v: %v", a.shape, err)
		}
		for i := 0; i < cnt; i++ {
			if a.size == 4 {
				out[i0+i] = float64(math.Float32frombits(a.order.Uint32(b[4*i:])))
			} else {
				out[i0+i] = math.Float64frombits(a.order.Uint64(b[8*i:]))
			}
		}
	}
	if err := a.finish(); err != nil {
		return nil, nil, err
	}
	for i, v := range out {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, a.errorf("non-finite value %v at flat index %d, want finite values", v, i)
		}
	}
	if a.fortran && rank == 2 {
		r, c := a.shape[0], a.shape[1]
		t := make([]float64, len(out))
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				t[i*c+j] = out[j*r+i]
			}
		}
		out = t
	}
	return out, a.shape, nil
}

// readMeanCov reads a mean vector and its covariance; with required false, both absent is not an error.
func readMeanCov(path string, z *zip.Reader, muKey, sigmaKey string, required bool) ([]float64, *mat.SymDense, error) {
	fm, fs := npzEntry(z, muKey), npzEntry(z, sigmaKey)
	switch {
	case fm == nil && fs == nil && !required:
		return nil, nil, nil
	case fm == nil:
		return nil, nil, fmt.Errorf("metrics: %s: field %q missing, want a float mean vector", path, muKey)
	case fs == nil:
		return nil, nil, fmt.Errorf("metrics: %s: field %q missing, want a float covariance matrix", path, sigmaKey)
	}
	mu, _, err := readFloats(path, fm, muKey, 1)
	if err != nil {
		return nil, nil, err
	}
	if len(mu) == 0 {
		return nil, nil, fmt.Errorf("metrics: %s: field %q is empty, want a mean vector", path, muKey)
	}
	sig, shape, err := readFloats(path, fs, sigmaKey, 2)
	if err != nil {
		return nil, nil, err
	}
	d := len(mu)
	if shape[0] != shape[1] {
		return nil, nil, fmt.Errorf("metrics: %s: field %q has shape %v, want a square %d×%d matrix", path, sigmaKey, shape, d, d)
	}
	if shape[0] != d {
		return nil, nil, fmt.Errorf("metrics: %s: field %q is %d×%d, want %d×%d to match %q", path, sigmaKey, shape[0], shape[1], d, d, muKey)
	}
	var maxAbs, maxAsym float64
	ai, aj := 0, 0
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			maxAbs = math.Max(maxAbs, math.Abs(sig[i*d+j]))
			if e := math.Abs(sig[i*d+j] - sig[j*d+i]); e > maxAsym {
				maxAsym, ai, aj = e, i, j
			}
		}
	}
	if maxAsym > symmetryTol*maxAbs {
		return nil, nil, fmt.Errorf("metrics: %s: field %q is not symmetric: [%d,%d] and [%d,%d] differ by %.3g (max |entry| %.3g)", path, sigmaKey, ai, aj, aj, ai, maxAsym, maxAbs)
	}
	s := mat.NewSymDense(d, nil)
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			s.SetSym(i, j, 0.5*(sig[i*d+j]+sig[j*d+i]))
		}
	}
	return mu, s, nil
}

// WriteSampleBatch writes an ADM sample batch: "arr_0", n uint8 images [n, h, w, c] produced one
// at a time by image(i) (so that 50,000 images never sit in memory together), and, when labels is
// not nil, "arr_1", their int64 class labels — the layout of guided-diffusion's sample batches,
// which its evaluations/evaluator.py reads.
func WriteSampleBatch(path string, n, h, w, c int, image func(i int) ([]uint8, error), labels []int64) error {
	if n <= 0 || h <= 0 || w <= 0 || (c != 1 && c != 3) {
		return fmt.Errorf("metrics: %s: %d images of %d×%d×%d, want a positive count of 1- or 3-channel images", path, n, h, w, c)
	}
	if labels != nil && len(labels) != n {
		return fmt.Errorf("metrics: %s: %d labels for %d images", path, len(labels), n)
	}
	return writeNpz(path, func(z *zip.Writer) error {
		wr, err := createStored(z, "arr_0")
		if err != nil {
			return err
		}
		if _, err := wr.Write(npyHeader("|u1", n, h, w, c)); err != nil {
			return err
		}
		for i := range n {
			px, err := image(i)
			if err != nil {
				return err
			}
			if len(px) != h*w*c {
				return fmt.Errorf("image %d has %d values, want %d×%d×%d", i, len(px), h, w, c)
			}
			if _, err := wr.Write(px); err != nil {
				return err
			}
		}
		if labels != nil {
			return writeNpyEntry(z, "arr_1", labels)
		}
		return nil
	})
}

// npyHeader is an npy 1.0 header for a C-order array (npyio infers shapes only from nested slices).
func npyHeader(descr string, shape ...int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, strings.Join(dims, ", "))
	// Pad so that magic(6)+version(2)+length(2)+header is a multiple of 64, ending in '\n'.
	hlen := len(dict) + 1
	hlen += (64 - (10+hlen)%64) % 64
	var hdr bytes.Buffer
	hdr.Write(npy.Magic[:])
	hdr.Write([]byte{1, 0})
	binary.Write(&hdr, binary.LittleEndian, uint16(hlen))
	hdr.WriteString(dict)
	hdr.WriteString(strings.Repeat(" ", hlen-len(dict)-1))
	hdr.WriteByte('\n')
	return hdr.Bytes()
}

// ReferenceID names a reference file for stored metrics by its content, not by the path as typed:
// "sha256:<16 hex> <file name>". A relative and an absolute path, or a moved copy, give the same
// id, so recomputing or merging never stores a metric twice against one reference.
func ReferenceID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("metrics: reference: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("metrics: reference %s: %w", path, err)
	}
	return fmt.Sprintf("sha256:%x %s", h.Sum(nil)[:8], filepath.Base(path)), nil
}
