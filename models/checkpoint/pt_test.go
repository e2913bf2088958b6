package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

var (
	rebuildV2  = pyGlobal{"torch._utils", "_rebuild_tensor_v2"}
	namespace  = pyNewObj{pyGlobal{"argparse", "Namespace"}, pyDict{{"model", "DiT-XL/2"}, {"image_size", 256}, {"lr", 1e-4}}}
	testW      = f32Storage("0", 1, 2, 3, 4)
	testB      = f32Storage("1", 5, 6)
	testOnes   = f32Storage("2", 1, 1, 1, 1)
	testWant   = map[string]*Tensor{"w": NewF32([]float32{1, 2, 3, 4}, 2, 2), "b": NewF32([]float32{5, 6}, 2)}
	testStores = []testStorage{testW, testB, testOnes}
)

// testSD is a two-tensor state dict whose keys carry prefix.
func testSD(prefix string) [][2]any {
	return [][2]any{{prefix + "w", contiguousTensor(testW, 2, 2)}, {prefix + "b", contiguousTensor(testB, 2)}}
}

// openTestArchive opens an in-memory torch.save image for white-box tests.
func openTestArchive(t *testing.T, name string, b []byte) *ptArchive {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := openPTArchive(name, zr, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustRecord(t *testing.T, a *ptArchive, name string) []byte {
	t.Helper()
	b, err := a.readSmallRecord(a.prefix+name, maxPickleBytes)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPTLayouts(t *testing.T) {
	onesSD := pyDict{{"w", contiguousTensor(testOnes, 2, 2)}, {"b", contiguousTensor(testB, 2)}}
	param := func(c pyCall) pyCall {
		return pyCall{pyGlobal{"torch._utils", "_rebuild_parameter"}, []any{c, true, pyODict{}}}
	}
	v2With7Args := func(s testStorage, shape ...int) pyCall {
		c := contiguousTensor(s, shape...)
		c.args = append(slices.Clone(c.args), pyDict{})
		return c
	}
	cases := []struct {
		name string
		top  any
		want map[string]*Tensor
	}{
		{"plain dict", pyDict(testSD("")), testWant},
		{"OrderedDict with _metadata", pyBuild{pyODict(testSD("")), pyDict{{"_metadata", pyODict{{"", pyDict{{"version", 1}}}}}}}, testWant},
		{"DDP module. prefix", pyDict(testSD("module.")), testWant},
		{"state_dict entry", pyDict{{"state_dict", pyDict(testSD(""))}, {"epoch", 3}}, testWant},
		{"model entry with Namespace", pyDict{{"model", pyODict(testSD(""))}, {"args", namespace}}, testWant},
		{"ema over model", pyDict{{"model", onesSD}, {"ema", pyDict(testSD(""))}, {"opt", pyDict{{"state", pyDict{}}, {"param_groups", pyList{pyDict{{"lr", 1e-4}}}}}}, {"args", namespace}}, testWant},
		{"ema first in file", pyDict{{"ema", pyDict(testSD(""))}, {"model", onesSD}, {"args", namespace}}, testWant},
		{"7-argument rebuild and nn.Parameter", pyDict{{"w", param(v2With7Args(testW, 2, 2))}, {"b", v2With7Args(testB, 2)}}, testWant},
		{"tensor subclass via _rebuild_from_type_v2", pyDict{
			{"w", pyCall{pyGlobal{"torch._tensor", "_rebuild_from_type_v2"}, []any{rebuildV2, pyGlobal{"torch", "Tensor"}, pyTuple(contiguousTensor(testW, 2, 2).args), pyDict{}}}},
			{"b", contiguousTensor(testB, 2)}}, testWant},
		{"partial module. prefix is kept", pyDict{{"module.w", contiguousTensor(testW, 2, 2)}, {"b", contiguousTensor(testB, 2)}},
			map[string]*Tensor{"module.w": testWant["w"], "b": testWant["b"]}},
		{"empty state dict", pyDict{}, map[string]*Tensor{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, "x.pt", ptArchiveBytes(t, c.top, testStores, nil))
			f, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, c.want, f.Tensors)
		})
	}
}

// viewIndex is the storage index of a view element, straight from the definition.
func viewIndex(offset int, stride, idx []int) int {
	for i, x := range idx {
		offset += x * stride[i]
	}
	return offset
}

func TestPTStridedViews(t *testing.T) {
	vals := make([]float32, 24)
	for i := range vals {
		vals[i] = float32(i)
	}
	s := f32Storage("0", vals...)
	views := []struct {
		name         string
		offset       int
		size, stride []int
	}{
		{"transpose", 0, []int{6, 4}, []int{1, 6}},
		{"rows with offset", 5, []int{2, 3}, []int{3, 1}},
		{"stepped columns", 1, []int{3, 2}, []int{8, 3}},
		{"broadcast", 2, []int{3, 4}, []int{0, 1}},
		{"scalar", 7, []int{}, []int{}},
		{"3-D permute", 0, []int{2, 3, 4}, []int{1, 2, 6}},
		{"empty", 3, []int{0, 5}, []int{5, 1}},
		{"size-1 dims with odd strides", 4, []int{1, 3, 1}, []int{100, 1, 7}},
		{"whole storage", 0, []int{4, 6}, []int{6, 1}},
		{"last element", 23, []int{1}, []int{1}},
	}
	var sd pyDict
	for _, v := range views {
		sd = append(sd, [2]any{v.name, tensorV2(s, v.offset, v.size, v.stride)})
	}
	p := writeTemp(t, "views.pt", ptArchiveBytes(t, sd, []testStorage{s}, nil))
	f, err := ReadPT(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		got, err := f.Get(v.name)
		if err != nil {
			t.Fatal(err)
		}
		n := 1
		for _, d := range v.size {
			n *= d
		}
		want := make([]float32, 0, n)
		idx := make([]int, len(v.size))
		for range n {
			want = append(want, vals[viewIndex(v.offset, v.stride, idx)])
			for d := len(idx) - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < v.size[d] {
					break
				}
				idx[d] = 0
			}
		}
		if !slices.Equal(got.Shape, v.size) || !slices.Equal(got.Data.([]float32), want) {
			t.Errorf("%s: got %v %v, want %v %v", v.name, got.Shape, got.Data, v.size, want)
		}
	}
}

// dtypeStorages covers every storage type the reader supports, encoded in the given byte order.
func dtypeStorages(order binary.AppendByteOrder) ([]testStorage, pyDict, map[string]*Tensor) {
	var (
		storages []testStorage
		sd       pyDict
		want     = map[string]*Tensor{}
	)
	add := func(name, class string, n int, data []byte, w *Tensor) {
		s := testStorage{key: name, class: class, numel: n, data: data}
		storages = append(storages, s)
		sd = append(sd, [2]any{name, contiguousTensor(s, n)})
		w.Shape = []int{n}
		want[name] = w
	}
	var b []byte
	b = order.AppendUint64(order.AppendUint64(nil, math.Float64bits(1.5)), math.Float64bits(-2))
	add("f64", "DoubleStorage", 2, b, &Tensor{DType: F64, Data: []float64{1.5, -2}})
	b = order.AppendUint16(order.AppendUint16(order.AppendUint16(nil, 0x3c00), 0xc000), 0x7c00)
	add("f16", "HalfStorage", 3, b, &Tensor{DType: F16, Data: []float32{1, -2, float32(math.Inf(1))}})
	b = order.AppendUint16(order.AppendUint16(nil, 0x3f80), 0xc040)
	add("bf16", "BFloat16Storage", 2, b, &Tensor{DType: BF16, Data: []float32{1, -3}})
	b = order.AppendUint64(order.AppendUint64(nil, 1<<40), uint64(math.MaxUint64-2))
	add("i64", "LongStorage", 2, b, &Tensor{DType: I64, Data: []int64{1 << 40, -3}})
	b = order.AppendUint32(order.AppendUint32(nil, 7), uint32(math.MaxUint32-7))
	add("i32", "IntStorage", 2, b, &Tensor{DType: I32, Data: []int32{7, -8}})
	add("u8", "ByteStorage", 2, []byte{0, 255}, &Tensor{DType: U8, Data: []uint8{0, 255}})
	add("bool", "BoolStorage", 2, []byte{1, 0}, &Tensor{DType: Bool, Data: []bool{true, false}})
	b = order.AppendUint32(order.AppendUint32(nil, math.Float32bits(0.25)), math.Float32bits(-8))
	add("f32", "FloatStorage", 2, b, &Tensor{DType: F32, Data: []float32{0.25, -8}})
	return storages, sd, want
}

func TestPTDTypes(t *testing.T) {
	for _, c := range []struct {
		name  string
		order binary.AppendByteOrder
		extra map[string][]byte
	}{
		{"little-endian, no byteorder record", binary.LittleEndian, nil},
		{"little-endian", binary.LittleEndian, map[string][]byte{"archive/byteorder": []byte("little")}},
		{"big-endian", binary.BigEndian, map[string][]byte{"archive/byteorder": []byte("big")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			storages, sd, want := dtypeStorages(c.order)
			p := writeTemp(t, "dtypes.pt", ptArchiveBytes(t, sd, storages, c.extra))
			f, err := ReadPT(p)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, want, f.Tensors)
		})
	}
}

func TestPTErrors(t *testing.T) {
	w := contiguousTensor(testW, 2, 2)
	huge := 1 << 62
	cases := []struct {
		name     string
		image    []byte
		contains []string
	}{
		{"zip that is not a torch file", zipOf(t, "hello.txt", []byte("hi")), []string{"not a torch.save file", "no <folder>/data.pkl"}},
		{"TorchScript", ptArchiveBytes(t, pyDict{{"w", w}}, testStores, map[string][]byte{"archive/constants.pkl": pickleBytes(pyTuple{})}), []string{"TorchScript"}},
		{"two data.pkl", ptArchiveBytes(t, pyDict{{"w", w}}, testStores, map[string][]byte{"other/data.pkl": pickleBytes(pyDict{})}), []string{"2 data.pkl records"}},
		{"non-tensor value", ptArchiveBytes(t, pyDict{{"w", w}, {"step", 3}}, testStores, nil), []string{`key "step" holds the int 3, not a tensor`}},
		{"non-tensor value in ema", ptArchiveBytes(t, pyDict{{"ema", pyDict{{"w", w}, {"x", namespace}}}, {"args", namespace}}, testStores, nil), []string{`key "x" in entry "ema" holds an object of class argparse.Namespace, not a tensor`}},
		{"ema is None", ptArchiveBytes(t, pyDict{{"ema", nil}, {"model", pyDict{{"w", w}}}}, testStores, nil), []string{`entry "ema" is None, not a state dict`}},
		{"top-level list", ptArchiveBytes(t, pyList{w}, testStores, nil), []string{"top-level object is a list, not a dict"}},
		{"non-string key", ptArchiveBytes(t, pyDict{{3, w}}, testStores, nil), []string{"key that is the int 3, not a string"}},
		{"missing storage record", ptArchiveBytes(t, pyDict{{"w", w}}, nil, nil), []string{"storage record archive/data/0 is missing"}},
		{"storage size mismatch", ptArchiveBytes(t, pyDict{{"w", w}}, []testStorage{{key: "0", class: "FloatStorage", numel: 4, data: make([]byte, 12)}}, nil),
			[]string{"archive/data/0 has 12 bytes, but 4 torch.FloatStorage elements need 16"}},
		{"view outside storage", ptArchiveBytes(t, pyDict{{"w", tensorV2(testW, 2, []int{2, 2}, []int{2, 1})}}, testStores, nil),
			[]string{`tensor "w"`, "reaches element 5 of a 4-element storage"}},
		{"stride overflow", ptArchiveBytes(t, pyDict{{"w", tensorV2(testW, 0, []int{3, 3}, []int{huge, huge})}}, testStores, nil), []string{"overflows"}},
		{"huge broadcast", ptArchiveBytes(t, pyDict{{"w", tensorV2(testW, 0, []int{1 << 30, 1 << 10}, []int{0, 0})}}, testStores, nil), []string{"over a 4-element storage copies too much"}},
		{"rank mismatch", ptArchiveBytes(t, pyDict{{"w", tensorV2(testW, 0, []int{4}, []int{1, 1})}}, testStores, nil), []string{"differ in rank"}},
		{"negative size", ptArchiveBytes(t, pyDict{{"w", tensorV2(testW, 0, []int{-4}, []int{1})}}, testStores, nil), []string{"size[0] is the int -4"}},
		{"unsupported storage", ptArchiveBytes(t, pyDict{{"w", contiguousTensor(testStorage{key: "9", class: "CharStorage", numel: 2, data: []byte{1, 2}}, 2)}},
			[]testStorage{{key: "9", class: "CharStorage", numel: 2, data: []byte{1, 2}}}, nil), []string{"torch.CharStorage is not supported"}},
		{"unknown storage class", ptArchiveBytes(t, pyDict{{"w", contiguousTensor(testStorage{key: "0", class: "UntypedStorage", numel: 16}, 16)}}, testStores, nil),
			[]string{"storage type torch.UntypedStorage is not supported"}},
		{"bad byteorder", ptArchiveBytes(t, pyDict{{"w", w}}, testStores, map[string][]byte{"archive/byteorder": []byte("middle")}), []string{`byteorder is "middle"`}},
		{"corrupt storage data", corruptByte(t, ptArchiveBytes(t, pyDict{{"w", w}}, testStores, nil), testW.data), []string{"checksum"}},
		{"garbage pickle", ptArchiveBytes(t, rawPickle("hello"), nil, nil), []string{"malformed archive/data.pkl", "no STOP"}},
		{"pickle without STOP", ptArchiveBytes(t, rawPickle{0x80, 2, '}'}, nil, nil), []string{"no STOP"}},
		{"BINBYTES8 length past the end", ptArchiveBytes(t, rawPickle{0x80, 2, 0x8e, 0, 0, 0, 0, 0, 1, 0, 0, '.'}, nil, nil), []string{"declares 1099511627776 bytes"}},
		{"FRAME length past the end", ptArchiveBytes(t, rawPickle{0x80, 4, 0x95, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '}', '.'}, nil, nil), []string{"FRAME at byte 2"}},
		// gopickle v0.2.0 indexes byte -1 of an empty LONG1 and panics.
		{"empty LONG1 (gopickle panic)", ptArchiveBytes(t, pyDict{{"w", pyRaw{0x8a, 0}}}, nil, nil), []string{"gopickle panicked"}},
		// Found by FuzzReadPTPickle: gopickle's DICT opcode indexes past an odd item count,
		// and its dispatch table has 255 entries, so opcode 0xff is out of range.
		{"odd DICT (gopickle panic)", ptArchiveBytes(t, rawPickle("\x80\x02(J\x00\x00\x00\x00d."), nil, nil), []string{"gopickle panicked"}},
		{"opcode 0xff (gopickle panic)", ptArchiveBytes(t, rawPickle{0x80, 2, 0xff, '.'}, nil, nil), []string{"gopickle panicked"}},
		// gopickle's OrderedDict hashes keys; a bytes key panics.
		{"bytes key in OrderedDict (gopickle panic)", ptArchiveBytes(t, pyODict{{pyRaw("C\x01k"), w}}, testStores, nil), []string{"gopickle panicked"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, "bad.pt", c.image)
			_, err := ReadPT(p)
			wantErr(t, err, p, c.contains...)
			_, err = Load(p)
			wantErr(t, err, p, c.contains...)
		})
	}
}

// Many overlapping views of one storage must not multiply memory without bound.
func TestPTCopyBudget(t *testing.T) {
	defer func(old int64) { maxExtraBytes = old }(maxExtraBytes)
	maxExtraBytes = 64
	s := f32Storage("0", 1, 2, 3, 4)
	var sd pyDict
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		sd = append(sd, [2]any{k, tensorV2(s, 0, []int{4, 4}, []int{0, 1})}) // 64 bytes each
	}
	p := writeTemp(t, "views.pt", ptArchiveBytes(t, sd, []testStorage{s}, nil))
	_, err := ReadPT(p)
	wantErr(t, err, p, "copies too much")

	// Whole-storage views share memory and cost nothing, however many there are.
	sd = nil
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		sd = append(sd, [2]any{k, contiguousTensor(s, 2, 2)})
	}
	p = writeTemp(t, "tied.pt", ptArchiveBytes(t, sd, []testStorage{s}, nil))
	if _, err := ReadPT(p); err != nil {
		t.Fatal(err)
	}
}

func TestPTTruncated(t *testing.T) {
	b := mustRead(t, goldenPT)
	for _, n := range []int{0, 1, 4, 30, 1000, len(b) / 2, len(b) - 100, len(b) - 22, len(b) - 1} {
		p := writeTemp(t, "cut.pt", b[:n])
		_, err := ReadPT(p)
		wantErr(t, err, p)
	}
}

// zipOf builds a zip holding one record.
func zipOf(t *testing.T, name string, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	zw.Close()
	return buf.Bytes()
}

// corruptByte flips one byte of the first occurrence of part in image.
func corruptByte(t *testing.T, image, part []byte) []byte {
	i := bytes.Index(image, part)
	if i < 0 {
		t.Fatal("part not found")
	}
	out := slices.Clone(image)
	out[i+1] ^= 0xff
	return out
}

func TestCheckPickle(t *testing.T) {
	for _, b := range [][]byte{
		pickleBytes(pyDict(testSD(""))),
		pickleBytes(pyDict{{"args", namespace}, {"n", 1 << 40}, {"f", 0.5}}),
	} {
		if err := checkPickle(b); err != nil {
			t.Errorf("valid pickle rejected: %v", err)
		}
	}
	for _, p := range []string{goldenPT, goldenTrain} {
		a := openTestArchive(t, p, mustRead(t, p))
		if err := checkPickle(mustRecord(t, a, "data.pkl")); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, b := range [][]byte{
		{0x80},                 // PROTO without its byte
		{'X', 5, 0, 0, 0, 'a'}, // BINUNICODE longer than the data
		{'c', 'a', '\n', 'b'},  // GLOBAL without the second newline
		{0x8d, 1, 2},           // BINUNICODE8 without its length
		{'N'},                  // no STOP
	} {
		if err := checkPickle(b); err == nil {
			t.Errorf("checkPickle(%q) accepted a broken pickle", b)
		}
	}
}
