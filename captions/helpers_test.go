package captions

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

	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/x448/float16"
)

// npyArr is one array of a hand-written .npz fixture, so that tests control dtype and layout.
type npyArr struct {
	name, descr string
	shape       []int
	data        []byte
	fortran     bool
}

// npyBytes encodes an .npy version 1.0 file the way numpy writes it (header padded to 64 bytes).
func npyBytes(a npyArr) []byte {
	dims := make([]string, len(a.shape))
	for i, d := range a.shape {
		dims[i] = fmt.Sprint(d)
	}
	shape := "(" + strings.Join(dims, ", ") + ")"
	if len(a.shape) == 1 {
		shape = "(" + dims[0] + ",)"
	}
	order := "False"
	if a.fortran {
		order = "True"
	}
	hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", a.descr, order, shape)
	hdr += strings.Repeat(" ", (64-(10+len(hdr)+1)%64)%64) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	b.Write(a.data)
	return b.Bytes()
}

// writeNpz writes arrays as np.savez (stored) or np.savez_compressed (deflated) would.
func writeNpz(t testing.TB, path string, compress bool, arrays ...npyArr) string {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, a := range arrays {
		method := zip.Store
		if compress {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: a.name + ".npy", Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(npyBytes(a))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeBytes(t, path, b.Bytes())
	return path
}

func writeBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func f16Bytes(v []float32) []byte {
	b := make([]byte, 0, 2*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(x).Bits())
	}
	return b
}

func i64Bytes(v []int64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}

func i32Bytes(v []int64) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

func boolBytes(v []int64) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// fixture is a small caption-feature set: P captions of L tokens of width C, with valid[i]
// valid tokens each; padding holds padValue so that readers must ignore it.
type fixture struct {
	p, l, c  int
	valid    []int
	feat     []float32 // [P, L, C]
	mask     []int64   // [P, L]
	padValue float32
}

func newFixture(valid ...int) *fixture {
	f := &fixture{p: len(valid), l: 5, c: 4, valid: valid, padValue: 7}
	f.feat = make([]float32, f.p*f.l*f.c)
	f.mask = make([]int64, f.p*f.l)
	for i := range f.p {
		for t := range f.l {
			valid := t < valid[i]
			if valid {
				f.mask[i*f.l+t] = 1
			}
			for ch := range f.c {
				v := f.padValue
				if valid {
					// Multiples of 1/8 below 64 are exact in float16 too.
					v = float32(i*100+t*10+ch) / 8
				}
				f.feat[(i*f.l+t)*f.c+ch] = v
			}
		}
	}
	return f
}

// tokens is what a reader should return for the fixture.
func (f *fixture) tokens() [][]float32 {
	out := make([][]float32, f.p)
	for i := range f.p {
		out[i] = f.feat[i*f.l*f.c : (i*f.l+f.valid[i])*f.c]
	}
	return out
}

// one returns caption i alone, as [1, L, C] and [1, L].
func (f *fixture) one(i int) ([]float32, []int64) {
	return f.feat[i*f.l*f.c : (i+1)*f.l*f.c], f.mask[i*f.l : (i+1)*f.l]
}

func (f *fixture) writeSafetensors(t testing.TB, path string, tensors map[string]*checkpoint.Tensor) string {
	t.Helper()
	if tensors == nil {
		tensors = map[string]*checkpoint.Tensor{
			FeatureField: checkpoint.NewF32(f.feat, f.p, f.l, f.c),
			MaskField:    checkpoint.NewI64(f.mask, f.p, f.l),
		}
	}
	if err := checkpoint.WriteSafetensors(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErr fails unless err is non-nil and its message contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func sameTokens(t *testing.T, got *Features, want [][]float32) {
	t.Helper()
	if got.Len() != len(want) {
		t.Fatalf("%d captions, want %d", got.Len(), len(want))
	}
	for i := range want {
		if got.Valid(i)*got.Width != len(want[i]) {
			t.Fatalf("caption %d: %d valid tokens (%d values), want %d values", i, got.Valid(i), len(got.Tokens[i]), len(want[i]))
		}
		for k, v := range want[i] {
			if got.Tokens[i][k] != v {
				t.Fatalf("caption %d value %d = %v, want %v", i, k, got.Tokens[i][k], v)
			}
		}
	}
}
