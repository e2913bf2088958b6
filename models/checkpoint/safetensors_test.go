package checkpoint

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// roundTripTensors covers every dtype, scalars, empty tensors and awkward values.
func roundTripTensors() map[string]*Tensor {
	return map[string]*Tensor{
		"f32":        NewF32([]float32{1.5, -0, float32(math.Inf(-1)), math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.NaN())}, 2, 3),
		"f32.scalar": NewF32([]float32{3.25}),
		"f64":        NewF64([]float64{math.Pi, -1e300, 5e-324}, 3, 1),
		"f64.scalar": NewF64([]float64{-2}),
		"i64":        NewI64([]int64{math.MinInt64, -1, 0, math.MaxInt64}, 4),
		"i64.scalar": NewI64([]int64{42}),
		"i32":        NewI32([]int32{math.MinInt32, 7}, 1, 2),
		"u8":         NewU8([]uint8{0, 1, 254, 255}, 2, 2),
		"u8.scalar":  NewU8([]uint8{9}),
		"bool":       NewBool([]bool{true, false, true}, 3),
		"f16":        {DType: F16, Shape: []int{4}, Data: []float32{1, -2, 65504, 5.960464477539063e-08}},
		"bf16":       {DType: BF16, Shape: []int{2, 2}, Data: []float32{1, -3, 3.3895313892515355e+38, float32(math.Inf(1))}},
		"empty":      NewF32([]float32{}, 0, 5),
		"a<&>\"q\"":  NewF32([]float32{1}, 1), // JSON-escaped name
		"ünï":        NewF32([]float32{2}, 1),
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rt.safetensors")
	in := roundTripTensors()
	meta := map[string]string{"format": "pt", "note": "ünïcode & <tags>"}
	if err := WriteSafetensors(p, in, meta); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func(string) (*File, error){ReadSafetensors, Load} {
		f, err := load(p)
		if err != nil {
			t.Fatal(err)
		}
		sameTensors(t, in, f.Tensors)
		if len(f.Metadata) != 2 || f.Metadata["note"] != meta["note"] || f.Metadata["format"] != "pt" {
			t.Errorf("metadata = %v", f.Metadata)
		}
		if f.Path != p {
			t.Errorf("Path = %q", f.Path)
		}
	}

	// Deterministic: the same input gives the same bytes.
	first := mustRead(t, p)
	if err := WriteSafetensors(p, roundTripTensors(), meta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, mustRead(t, p)) {
		t.Error("two writes of the same tensors differ")
	}
	n := binary.LittleEndian.Uint64(first)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	hdr := string(first[8 : 8+n])
	if !strings.HasPrefix(hdr, `{"__metadata__":{"format":"pt",`) || strings.TrimRight(hdr, " ")[len(strings.TrimRight(hdr, " "))-1] != '}' {
		t.Errorf("header = %s", hdr)
	}
	// Data follows name order.
	if i, j := strings.Index(hdr, `"bf16"`), strings.Index(hdr, `"u8"`); i < 0 || j < i || !strings.Contains(hdr, `"f32.scalar":{"dtype":"F32","shape":[],"data_offsets":[`) {
		t.Errorf("header not in name order or scalar shape not []: %s", hdr)
	}

	// No metadata: no __metadata__ entry, and no temporary files left behind.
	if err := WriteSafetensors(p, in, nil); err != nil {
		t.Fatal(err)
	}
	if b := mustRead(t, p); bytes.Contains(b, []byte(metadataKey)) {
		t.Error("empty metadata written")
	}
	if f, err := ReadSafetensors(p); err != nil || f.Metadata != nil {
		t.Errorf("metadata = %v, %v; want nil", f.Metadata, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries after writing, want 1", len(ents))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}

	// An empty checkpoint is valid.
	if err := WriteSafetensors(p, nil, nil); err != nil {
		t.Fatal(err)
	}
	if f, err := ReadSafetensors(p); err != nil || len(f.Tensors) != 0 {
		t.Errorf("empty file: %v, %v", f, err)
	}
}

// F16/BF16 values are rounded to nearest even on write.
func TestHalfRounding(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, rounds to even
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, rounds to even
		{math.Float32frombits(0x3f808001), 0x3f81},
		{math.MaxFloat32, 0x7f80}, // rounds up to +Inf
		{float32(math.Inf(-1)), 0xff80},
	}
	for _, c := range cases {
		if got := f32ToBF16(c.in); got != c.want {
			t.Errorf("f32ToBF16(%#x) = %#x, want %#x", math.Float32bits(c.in), got, c.want)
		}
	}
	if h := f32ToBF16(math.Float32frombits(0x7fffffff)); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("NaN became %#x", h)
	}
	p := filepath.Join(t.TempDir(), "h.safetensors")
	in := map[string]*Tensor{"h": {DType: F16, Shape: []int{2}, Data: []float32{1.0009765625 / 2 * 2, 70000}}}
	if err := WriteSafetensors(p, in, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	got := f.Tensors["h"].Data.([]float32)
	if got[0] != 1.0009765625 || !math.IsInf(float64(got[1]), 1) {
		t.Errorf("F16 round trip = %v", got)
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "w.safetensors")
	cases := []struct {
		name     string
		tensors  map[string]*Tensor
		meta     map[string]string
		contains string
	}{
		{"short data", map[string]*Tensor{"x": NewF32([]float32{1, 2}, 3)}, nil, `tensor "x": data has 2 elements but shape [3] needs 3`},
		{"wrong data type", map[string]*Tensor{"x": {DType: F32, Shape: []int{1}, Data: []float64{1}}}, nil, "dtype F32 needs []float32 data, got []float64"},
		{"unsupported dtype", map[string]*Tensor{"x": {DType: "I8", Shape: []int{1}, Data: []uint8{1}}}, nil, `unsupported dtype "I8"`},
		{"nil tensor", map[string]*Tensor{"x": nil}, nil, `tensor "x" is nil`},
		{"negative dim", map[string]*Tensor{"x": NewF32(nil, -1)}, nil, "negative dimension"},
		{"reserved name", map[string]*Tensor{metadataKey: NewF32([]float32{1})}, nil, "reserved"},
		{"bad UTF-8 name", map[string]*Tensor{"\xff": NewF32([]float32{1})}, nil, "not valid UTF-8"},
		{"bad UTF-8 metadata", nil, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := WriteSafetensors(p, c.tensors, c.meta)
			wantErr(t, err, p, c.contains)
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %d files", len(ents))
	}
	missing := filepath.Join(dir, "no", "such", "dir", "w.safetensors")
	err := WriteSafetensors(missing, map[string]*Tensor{"x": NewF32([]float32{1})}, nil)
	wantErr(t, err, missing, "create temporary file")
}

func TestSafetensorsBadInput(t *testing.T) {
	f32x2 := make([]byte, 8)
	good := `{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	if _, err := readSafetensors("ok", bytes.NewReader(stImage(good, f32x2)), int64(len(stImage(good, f32x2)))); err != nil {
		t.Fatalf("the valid base case fails: %v", err)
	}
	lenPrefix := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	cases := []struct {
		name     string
		image    []byte
		contains string
	}{
		{"empty file", nil, "need at least 8 bytes, got 0"},
		{"shorter than the length prefix", []byte{1, 2, 3}, "got 3"},
		{"header length beyond file", lenPrefix(100, "{}"), "header length 100 runs past the end of the file (only 2 bytes"},
		{"header length over limit", lenPrefix(1<<40, "{}"), "over the 100000000-byte limit"},
		{"bad JSON", stImage(`{"x":{"dtype":"F32",`, nil), "invalid JSON"},
		{"not an object", stImage(`[1,2]`, nil), "header is not a JSON object"},
		{"trailing JSON", stImage(`{} {}`, nil), "unexpected data after the JSON object"},
		{"invalid UTF-8", stImage("{\"\xff\":1}", nil), "not valid UTF-8"},
		{"entry not an object", stImage(`{"x":5}`, nil), `tensor "x": entry is a number, expected {dtype, shape, data_offsets}`},
		{"missing dtype", stImage(`{"x":{"shape":[2],"data_offsets":[0,8]}}`, f32x2), `tensor "x": missing dtype`},
		{"missing shape", stImage(`{"x":{"dtype":"F32","data_offsets":[0,8]}}`, f32x2), "missing shape"},
		{"missing offsets", stImage(`{"x":{"dtype":"F32","shape":[2]}}`, f32x2), "missing data_offsets"},
		{"null shape", stImage(`{"x":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, f32x2[:4]), "shape is null, expected an array of integers"},
		{"unknown dtype", stImage(`{"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, f32x2), `unknown dtype "F33"`},
		{"unsupported dtype", stImage(`{"x":{"dtype":"I16","shape":[4],"data_offsets":[0,8]}}`, f32x2), "dtype I16 is not supported"},
		{"negative dim", stImage(`{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, f32x2), "negative dimension -2"},
		{"fractional dim", stImage(`{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}`, f32x2), "shape is [1.5], expected an array of integers"},
		{"huge shape", stImage(`{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, f32x2), "more than 2^63 elements"},
		{"wrong dtype size", stImage(`{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`, f32x2), "data_offsets [0, 8] span 8 bytes, but F64[2] needs 16"},
		{"offsets out of range", stImage(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, f32x2), "data_offsets [8, 16] run past the end of the data section (8 bytes)"},
		{"offsets reversed", stImage(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, f32x2), "not 0 <= begin <= end"},
		{"dtype not a string", stImage(`{"x":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, f32x2), "dtype is 4, expected a string"},
		{"three offsets", stImage(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, f32x2), "data_offsets has 3 values"},
		{"overlap", stImage(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32x2), `tensor "y" overlaps tensor "x"`},
		{"gap", stImage(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32x2), `gap before tensor "x" (starts at data byte 4, expected 0)`},
		{"trailing bytes", stImage(good, make([]byte, 12)), "tensors cover 8 bytes but the data section has 12"},
		{"duplicate key", stImage(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32x2), `duplicate key "x"`},
		{"metadata not strings", stImage(`{"__metadata__":{"a":1},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32x2), `__metadata__["a"] is not a string`},
		{"metadata not an object", stImage(`{"__metadata__":"v"}`, nil), "__metadata__ is not a JSON object of strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, "bad.safetensors", c.image)
			_, err := ReadSafetensors(p)
			wantErr(t, err, p, c.contains)
			_, err = Load(p)
			wantErr(t, err, p, c.contains)
		})
	}
}

func TestSafetensorsTruncated(t *testing.T) {
	b := mustRead(t, goldenST)
	n := int(binary.LittleEndian.Uint64(b))
	for _, cut := range []int{4, 8, 9, 100, n + 7, n + 8, n + 9, len(b) / 2, len(b) - 1} {
		p := writeTemp(t, "cut.safetensors", b[:cut])
		_, err := ReadSafetensors(p)
		wantErr(t, err, p)
	}
}
