package metrics

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func symOf(n int, f func(i, j int) float64) *mat.SymDense {
	s := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			s.SetSym(i, j, f(i, j))
		}
	}
	return s
}

func sampleRefStats() *RefStats {
	return &RefStats{
		Mu:     []float64{0.5, -1.25, 3e-7, 12},
		Sigma:  symOf(4, func(i, j int) float64 { return 1/float64(1+i+j) + 0.1*float64(i*j) }),
		MuS:    []float64{1, 2, 3},
		SigmaS: symOf(3, func(i, j int) float64 { return float64(10*i + j) }),
	}
}

func TestRefStatsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rs := sampleRefStats()
	rs.Images = &Images{N: 2, H: 3, W: 2, C: 3, Pix: make([]uint8, 36)}
	for i := range rs.Images.Pix {
		rs.Images.Pix[i] = uint8(7 * i)
	}
	path := filepath.Join(dir, "ref.npz")
	if err := WriteRefStats(path, rs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRefStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if !equalVec(got.Mu, rs.Mu) || !mat.Equal(got.Sigma, rs.Sigma) || !equalVec(got.MuS, rs.MuS) || !mat.Equal(got.SigmaS, rs.SigmaS) {
		t.Errorf("round trip changed the statistics: %+v", got)
	}
	if got.Images != nil {
		t.Error("ReadRefStats filled Images")
	}
	im, err := ReadImages(path)
	if err != nil {
		t.Fatal(err)
	}
	if im.N != 2 || im.H != 3 || im.W != 2 || im.C != 3 || !bytes.Equal(im.Pix, rs.Images.Pix) {
		t.Errorf("images round trip: %+v", im)
	}

	// pytorch-fid format: only mu and sigma.
	pf := &RefStats{Mu: rs.Mu, Sigma: rs.Sigma}
	path2 := filepath.Join(dir, "pf.npz")
	if err := WriteRefStats(path2, pf); err != nil {
		t.Fatal(err)
	}
	got2, err := ReadRefStats(path2)
	if err != nil {
		t.Fatal(err)
	}
	if got2.MuS != nil || got2.SigmaS != nil || !equalVec(got2.Mu, pf.Mu) {
		t.Errorf("pytorch-fid round trip: %+v", got2)
	}
	_, err = ReadImages(path2)
	wantErr(t, "no arr_0", err, `field "arr_0" missing`)

	// A sample batch holding only arr_0.
	path3 := filepath.Join(dir, "samples.npz")
	if err := WriteImages(path3, rs.Images); err != nil {
		t.Fatal(err)
	}
	if im, err := ReadImages(path3); err != nil || !bytes.Equal(im.Pix, rs.Images.Pix) {
		t.Errorf("WriteImages round trip: %v", err)
	}
	_, err = ReadRefStats(path3)
	wantErr(t, "samples as ref", err, `field "mu" missing`)

	// The archive is what np.savez writes: stored "key.npy" entries.
	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var names []string
	for _, f := range z.File {
		names = append(names, f.Name)
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
	}
	if strings.Join(names, ",") != "mu.npy,sigma.npy,mu_s.npy,sigma_s.npy,arr_0.npy" {
		t.Errorf("entries %v", names)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func equalVec(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// npyV1 encodes an npy 1.0 array the way numpy does.
func npyV1(descr string, fortran bool, shape []int, data []byte) []byte {
	sh := make([]string, len(shape))
	for i, d := range shape {
		sh[i] = fmt.Sprint(d)
	}
	shs := "(" + strings.Join(sh, ", ") + ")"
	if len(shape) == 1 {
		shs = fmt.Sprintf("(%d,)", shape[0])
	}
	fo := "False"
	if fortran {
		fo = "True"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fo, shs)
	hlen := len(dict) + 1
	hlen += (64 - (10+hlen)%64) % 64
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(hlen))
	b.WriteString(dict + strings.Repeat(" ", hlen-len(dict)-1) + "\n")
	b.Write(data)
	return b.Bytes()
}

func f32le(v ...float64) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
	}
	return b
}

func f64le(v ...float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

type zEntry struct {
	name string
	data []byte
}

func writeZip(t *testing.T, path string, method uint16, entries ...zEntry) {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := z.CreateHeader(&zip.FileHeader{Name: e.name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadRefStatsNumpyLayouts reads files laid out as numpy writes them: float32 (pytorch-fid keeps mu in float32), compressed, Fortran order, bare key names, big-endian.
func TestReadRefStatsNumpyLayouts(t *testing.T) {
	dir := t.TempDir()
	sig := []float64{2, 0.5, 0.5, 1}
	path := filepath.Join(dir, "np.npz")
	writeZip(t, path, zip.Deflate,
		zEntry{"mu.npy", npyV1("<f4", false, []int{2}, f32le(1.5, -2))},
		zEntry{"sigma.npy", npyV1("<f8", true, []int{2, 2}, f64le(sig...))},
	)
	rs, err := ReadRefStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if !equalVec(rs.Mu, []float64{1.5, -2}) || rs.Sigma.At(0, 1) != 0.5 || rs.Sigma.At(1, 1) != 1 {
		t.Errorf("got %v %v", rs.Mu, mat.Formatted(rs.Sigma))
	}
	be := make([]byte, 16)
	binary.BigEndian.PutUint64(be, math.Float64bits(3))
	binary.BigEndian.PutUint64(be[8:], math.Float64bits(4))
	path2 := filepath.Join(dir, "bare.npz")
	writeZip(t, path2, zip.Store,
		zEntry{"mu", npyV1(">f8", false, []int{2}, be)},
		zEntry{"sigma", npyV1("<f4", false, []int{2, 2}, f32le(sig...))},
	)
	rs, err = ReadRefStats(path2)
	if err != nil {
		t.Fatal(err)
	}
	if !equalVec(rs.Mu, []float64{3, 4}) || rs.Sigma.At(0, 0) != 2 {
		t.Errorf("got %v", rs.Mu)
	}
}

func TestReadRefStatsErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.npz")
	if err := WriteRefStats(good, sampleRefStats()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Truncated anywhere: always an error, never a panic or a partial read.
	for n := 0; n < len(raw); n += 23 {
		p := filepath.Join(dir, "cut.npz")
		if err := os.WriteFile(p, raw[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRefStats(p); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(raw))
		}
	}
	mu := zEntry{"mu.npy", npyV1("<f8", false, []int{2}, f64le(1, 2))}
	sigma := zEntry{"sigma.npy", npyV1("<f8", false, []int{2, 2}, f64le(1, 0, 0, 1))}
	cases := []struct {
		name    string
		make    func(path string)
		wantSub string
	}{
		{"missing file", func(string) {}, "no such file"},
		{"truncated", func(p string) { os.WriteFile(p, raw[:len(raw)/2], 0o644) }, "not a readable .npz archive (truncated or corrupt?)"},
		{"truncated tail", func(p string) { os.WriteFile(p, raw[:len(raw)-5], 0o644) }, "not a readable .npz archive"},
		{"empty file", func(p string) { os.WriteFile(p, nil, 0o644) }, "not a readable .npz archive"},
		{"not zip", func(p string) { os.WriteFile(p, []byte("hello world, not a zip at all"), 0o644) }, "not a readable .npz archive"},
		{"corrupt data", func(p string) {
			b := bytes.Clone(raw)
			i := bytes.Index(b, []byte("sigma.npy")) + 9 + 200 // inside sigma's stored data
			b[i] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}, `field "sigma": corrupt entry: zip: checksum error`},
		{"missing mu", func(p string) { writeZip(t, p, zip.Store, sigma) }, `field "mu" missing`},
		{"missing sigma", func(p string) { writeZip(t, p, zip.Store, mu) }, `field "sigma" missing`},
		{"sigma not square", func(p string) {
			writeZip(t, p, zip.Store, mu, zEntry{"sigma.npy", npyV1("<f8", false, []int{2, 3}, f64le(1, 0, 0, 0, 1, 0))})
		}, `field "sigma" has shape [2 3], want a square 2×2 matrix`},
		{"sigma size", func(p string) {
			writeZip(t, p, zip.Store, mu, zEntry{"sigma.npy", npyV1("<f8", false, []int{3, 3}, f64le(1, 0, 0, 0, 1, 0, 0, 0, 1))})
		}, `field "sigma" is 3×3, want 2×2 to match "mu"`},
		{"sigma 1-D", func(p string) {
			writeZip(t, p, zip.Store, mu, zEntry{"sigma.npy", npyV1("<f8", false, []int{4}, f64le(1, 0, 0, 1))})
		}, `field "sigma": shape [4], want 2 dimensions`},
		{"mu NaN", func(p string) {
			writeZip(t, p, zip.Store, zEntry{"mu.npy", npyV1("<f8", false, []int{2}, f64le(1, math.NaN()))}, sigma)
		}, `field "mu": non-finite value NaN at flat index 1`},
		{"sigma Inf", func(p string) {
			writeZip(t, p, zip.Store, mu, zEntry{"sigma.npy", npyV1("<f4", false, []int{2, 2}, f32le(1, 0, 0, math.Inf(-1)))})
		}, `field "sigma": non-finite value -Inf at flat index 3`},
		{"sigma asymmetric", func(p string) {
			writeZip(t, p, zip.Store, mu, zEntry{"sigma.npy", npyV1("<f8", false, []int{2, 2}, f64le(1, 0.5, 0.4, 1))})
		}, `field "sigma" is not symmetric`},
		{"int dtype", func(p string) {
			writeZip(t, p, zip.Store, zEntry{"mu.npy", npyV1("<i8", false, []int{2}, f64le(1, 2))}, sigma)
		}, `field "mu": dtype <i8, want float32 or float64`},
		{"short entry", func(p string) {
			writeZip(t, p, zip.Store, zEntry{"mu.npy", npyV1("<f8", false, []int{3}, f64le(1, 2))}, sigma)
		}, `field "mu": entry holds 144 bytes, want 152 for dtype <f8 and shape [3] (truncated?)`},
		{"bad magic", func(p string) {
			writeZip(t, p, zip.Store, zEntry{"mu.npy", []byte("not an npy array at all")}, sigma)
		}, `field "mu": not an npy array (bad magic)`},
		{"bad header", func(p string) {
			b := npyV1("<f8", false, []int{2}, f64le(1, 2))
			copy(b[10:], "{'nonsense'")
			writeZip(t, p, zip.Store, zEntry{"mu.npy", b}, sigma)
		}, `field "mu": bad npy header`},
		{"huge header length", func(p string) {
			b := npyV1("<f8", false, []int{2}, f64le(1, 2))
			b[6] = 2
			binary.LittleEndian.PutUint32(b[8:], 1<<30)
			writeZip(t, p, zip.Store, zEntry{"mu.npy", b}, sigma)
		}, `field "mu": corrupt npy header length`},
		{"mu_s without sigma_s", func(p string) {
			writeZip(t, p, zip.Store, mu, sigma, zEntry{"mu_s.npy", npyV1("<f8", false, []int{2}, f64le(1, 2))})
		}, `field "sigma_s" missing`},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".npz")
		c.make(path)
		_, err := ReadRefStats(path)
		if err == nil || !strings.Contains(err.Error(), c.wantSub) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.wantSub)
			continue
		}
		t.Logf("%s: %v", c.name, err)
		if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q should be one line naming the file", c.name, err)
		}
	}
}

func TestWriteRefStatsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npz")
	rs := sampleRefStats()
	rs.Sigma = mat.NewSymDense(3, nil)
	wantErr(t, "sigma dims", WriteRefStats(path, rs), `field "sigma" is 3×3, want 4×4 to match "mu"`)
	rs = sampleRefStats()
	rs.Mu[2] = math.NaN()
	wantErr(t, "NaN", WriteRefStats(path, rs), "mu[2] = NaN")
	rs = sampleRefStats()
	rs.SigmaS = nil
	wantErr(t, "half sFID", WriteRefStats(path, rs), `"mu_s" and "sigma_s" must be both set`)
	rs = sampleRefStats()
	rs.Images = &Images{N: 1, H: 2, W: 2, C: 3, Pix: make([]uint8, 5)}
	wantErr(t, "images", WriteRefStats(path, rs), "5 pixels bytes for shape [1,2,2,3]")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a rejected write left %s behind", path)
	}
	// Images of the wrong dtype.
	writeZip(t, path, zip.Store, zEntry{"arr_0.npy", npyV1("<f4", false, []int{1, 1, 1, 1}, f32le(1))})
	_, err := ReadImages(path)
	wantErr(t, "float images", err, `field "arr_0": dtype <f4, want uint8`)
	writeZip(t, path, zip.Store, zEntry{"arr_0.npy", npyV1("|u1", false, []int{2, 2}, []byte{1, 2, 3, 4})})
	_, err = ReadImages(path)
	wantErr(t, "2-D images", err, `shape [2 2] (fortran_order=false), want a C-order [N,H,W,C] array`)
}
