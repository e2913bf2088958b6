package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Fixtures copied from the DiT golden set (see testdata/checkpoint): the same
// 52 float32 weights as safetensors, a plain state_dict .pt and a training
// checkpoint .pt whose "model" entry is all ones and whose "ema" entry holds
// the weights.
const (
	goldenST    = "../../testdata/checkpoint/weights.safetensors"
	goldenPT    = "../../testdata/checkpoint/weights.pt"
	goldenTrain = "../../testdata/checkpoint/train_checkpoint.pt"
)

// writeTemp stores b in a fresh temporary file and returns its path.
func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantErr checks the error style "checkpoint: <path>: <what>" and that what contains each part.
func wantErr(t *testing.T, err error, path string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.HasPrefix(msg, "checkpoint: "+path+": ") {
		t.Errorf("error %q does not start with %q", msg, "checkpoint: "+path+": ")
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not contain %q", msg, p)
		}
	}
}

// sameTensors fails unless a and b hold the same names, dtypes, shapes and bit-identical values.
func sameTensors(t *testing.T, a, b map[string]*Tensor) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d tensors vs %d", len(a), len(b))
	}
	for name, x := range a {
		y, ok := b[name]
		if !ok {
			t.Fatalf("tensor %q missing", name)
		}
		if msg := tensorDiff(x, y); msg != "" {
			t.Fatalf("tensor %q: %s", name, msg)
		}
	}
}

// tensorDiff describes the first difference between two tensors, "" when equal (NaNs compare by bits).
func tensorDiff(x, y *Tensor) string {
	if x.DType != y.DType {
		return "dtype " + string(x.DType) + " vs " + string(y.DType)
	}
	if len(x.Shape) != len(y.Shape) {
		return "rank differs"
	}
	for i := range x.Shape {
		if x.Shape[i] != y.Shape[i] {
			return "shape differs"
		}
	}
	same := false
	switch a := x.Data.(type) {
	case []float32:
		b, ok := y.Data.([]float32)
		same = ok && len(a) == len(b)
		for i := 0; same && i < len(a); i++ {
			same = math.Float32bits(a[i]) == math.Float32bits(b[i]) || (a[i] != a[i] && b[i] != b[i])
		}
	case []float64:
		b, ok := y.Data.([]float64)
		same = ok && len(a) == len(b)
		for i := 0; same && i < len(a); i++ {
			same = math.Float64bits(a[i]) == math.Float64bits(b[i])
		}
	case []int64:
		b, ok := y.Data.([]int64)
		same = ok && equalSlices(a, b)
	case []int32:
		b, ok := y.Data.([]int32)
		same = ok && equalSlices(a, b)
	case []uint8:
		b, ok := y.Data.([]uint8)
		same = ok && equalSlices(a, b)
	case []bool:
		b, ok := y.Data.([]bool)
		same = ok && equalSlices(a, b)
	}
	if !same {
		return "data differs"
	}
	return ""
}

func equalSlices[T comparable](a, b []T) bool {
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

// stImage builds a safetensors image from a raw header text (padded like the writer) and data bytes.
func stImage(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// --- a minimal pickler for building torch.save archives in tests ---

type (
	pyGlobal struct{ module, name string }
	pyCall   struct { // REDUCE: fn(*args)
		fn   any
		args []any
	}
	pyNewObj struct { // NEWOBJ + BUILD, as argparse.Namespace is pickled
		cls   pyGlobal
		state any
	}
	pyTuple []any
	pyList  []any
	pyDict  [][2]any // a plain dict, in order
	pyODict [][2]any // collections.OrderedDict
	pyPID   []any    // BINPERSID of this tuple
	pyRaw   []byte   // opcodes spliced in verbatim
	pyBuild struct { // obj, then BUILD with state (an object's __dict__)
		obj, state any
	}
	rawPickle []byte // a whole data.pkl, used as is
)

// pickleBytes pickles v with protocol 2, the way torch.save does.
func pickleBytes(v any) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x80, 2})
	pickleValue(&b, v)
	b.WriteByte('.')
	return b.Bytes()
}

func pickleValue(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteByte('N')
	case bool:
		if x {
			b.WriteByte(0x88)
		} else {
			b.WriteByte(0x89)
		}
	case int:
		if x == int(int32(x)) {
			b.WriteByte('J')
			b.Write(binary.LittleEndian.AppendUint32(nil, uint32(int32(x))))
		} else {
			b.Write([]byte{0x8a, 8}) // LONG1, 8 bytes two's complement
			b.Write(binary.LittleEndian.AppendUint64(nil, uint64(x)))
		}
	case float64:
		b.WriteByte('G')
		b.Write(binary.BigEndian.AppendUint64(nil, math.Float64bits(x)))
	case string:
		b.WriteByte('X')
		b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(x))))
		b.WriteString(x)
	case pyGlobal:
		b.WriteString("c" + x.module + "\n" + x.name + "\n")
	case pyTuple:
		b.WriteByte('(')
		for _, e := range x {
			pickleValue(b, e)
		}
		b.WriteByte('t')
	case pyList:
		b.WriteString("](")
		for _, e := range x {
			pickleValue(b, e)
		}
		b.WriteByte('e')
	case pyDict:
		b.WriteString("}(")
		for _, kv := range x {
			pickleValue(b, kv[0])
			pickleValue(b, kv[1])
		}
		b.WriteByte('u')
	case pyODict:
		pickleValue(b, pyGlobal{"collections", "OrderedDict"})
		b.WriteString(")R(")
		for _, kv := range x {
			pickleValue(b, kv[0])
			pickleValue(b, kv[1])
		}
		b.WriteByte('u')
	case pyCall:
		pickleValue(b, x.fn)
		pickleValue(b, pyTuple(x.args))
		b.WriteByte('R')
	case pyNewObj:
		pickleValue(b, x.cls)
		b.WriteByte(')')
		b.WriteByte(0x81)
		pickleValue(b, x.state)
		b.WriteByte('b')
	case pyPID:
		pickleValue(b, pyTuple(x))
		b.WriteByte('Q')
	case pyRaw:
		b.Write(x)
	case pyBuild:
		pickleValue(b, x.obj)
		pickleValue(b, x.state)
		b.WriteByte('b')
	default:
		panic("pickleValue: unsupported type")
	}
}

// ptStorage builds the storage record of a test archive.
type testStorage struct {
	key   string
	class string // e.g. "FloatStorage"
	numel int
	data  []byte // little-endian unless the archive says otherwise
}

// tensorV2 is torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).
func tensorV2(s testStorage, offset int, size, stride []int) pyCall {
	return pyCall{pyGlobal{"torch._utils", "_rebuild_tensor_v2"}, []any{
		pyPID{"storage", pyGlobal{"torch", s.class}, s.key, "cpu", s.numel},
		offset, intsTuple(size), intsTuple(stride), false, pyODict{},
	}}
}

// contiguousTensor views the whole storage s with the given shape.
func contiguousTensor(s testStorage, shape ...int) pyCall {
	return tensorV2(s, 0, shape, rowMajor(shape))
}

func rowMajor(shape []int) []int {
	st := make([]int, len(shape))
	n := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = n
		n *= shape[i]
	}
	return st
}

func intsTuple(v []int) pyTuple {
	t := make(pyTuple, len(v))
	for i, x := range v {
		t[i] = x
	}
	return t
}

func f32Storage(key string, vals ...float32) testStorage {
	var b []byte
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return testStorage{key: key, class: "FloatStorage", numel: len(vals), data: b}
}

// ptArchiveBytes zips a pickled top-level object and its storages as torch.save does
// (every record stored uncompressed under one folder); extra records are added verbatim.
func ptArchiveBytes(t testing.TB, top any, storages []testStorage, extra map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if r, ok := top.(rawPickle); ok {
		add("archive/data.pkl", r)
	} else {
		add("archive/data.pkl", pickleBytes(top))
	}
	seen := map[string]bool{}
	for _, s := range storages {
		if !seen[s.key] {
			add("archive/data/"+s.key, s.data)
			seen[s.key] = true
		}
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, extra[n])
	}
	add("archive/version", []byte("3\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
