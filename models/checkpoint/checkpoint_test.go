package checkpoint

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// All three golden layouts must give the same 52 tensors, bit for bit.
func TestGoldenFormatsAgree(t *testing.T) {
	ref, err := ReadSafetensors(goldenST)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Tensors) != 52 {
		t.Fatalf("weights.safetensors has %d tensors, want 52", len(ref.Tensors))
	}
	pe, err := ref.Get("pos_embed")
	if err != nil {
		t.Fatal(err)
	}
	if pe.DType != F32 || !slices.Equal(pe.Shape, []int{1, 16, 64}) {
		t.Errorf("pos_embed is %s%v, want F32[1 16 64]", pe.DType, pe.Shape)
	}
	if ref.Metadata == nil {
		t.Error("weights.safetensors: __metadata__ not read")
	}
	for _, p := range []string{goldenPT, goldenTrain} {
		for _, load := range []func(string) (*File, error){ReadPT, Load} {
			f, err := load(p)
			if err != nil {
				t.Fatal(err)
			}
			if f.Metadata != nil {
				t.Errorf("%s: Metadata = %v, want nil for .pt", p, f.Metadata)
			}
			sameTensors(t, ref.Tensors, f.Tensors)
		}
	}
}

// The training checkpoint's "model" entry is all ones; the reader must return "ema".
func TestTrainCheckpointUsesEMA(t *testing.T) {
	f, err := ReadPT(goldenTrain)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := f.Get("blocks.0.attn.qkv.weight")
	allOnes := true
	for _, v := range w.Data.([]float32) {
		allOnes = allOnes && v == 1
	}
	if allOnes {
		t.Fatal("loaded the all-ones \"model\" entry, not \"ema\"")
	}

	// Guard against a vacuous test: the file's "model" entry really is all ones.
	a := openTestArchive(t, goldenTrain, mustRead(t, goldenTrain))
	top, err := a.unpickle(mustRecord(t, a, "data.pkl"))
	if err != nil {
		t.Fatal(err)
	}
	items, _ := dictItems(top)
	model, ok := lookup(items, "model")
	if !ok {
		t.Fatal("no model entry")
	}
	mitems, _ := dictItems(model)
	v, _ := lookup(mitems, "blocks.0.attn.qkv.weight")
	mt, err := a.materialize(v.(*ptTensor))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range mt.Data.([]float32) {
		if x != 1 {
			t.Fatal("the fixture's model entry is not all ones; the EMA test proves nothing")
		}
	}
	if len(a.storages) == 0 {
		t.Fatal("no storages seen")
	}
}

func TestTensorConversions(t *testing.T) {
	cases := []*Tensor{
		NewF32([]float32{1, -2, 3}, 3),
		NewF64([]float64{1, -2, 3}, 3),
		NewI64([]int64{1, -2, 3}, 3),
		NewI32([]int32{1, -2, 3}, 3),
		{DType: F16, Shape: []int{3}, Data: []float32{1, -2, 3}},
	}
	for _, c := range cases {
		f32, err := c.Float32()
		if err != nil || !slices.Equal(f32, []float32{1, -2, 3}) {
			t.Errorf("%s Float32 = %v, %v", c.DType, f32, err)
		}
		f64, err := c.Float64()
		if err != nil || !slices.Equal(f64, []float64{1, -2, 3}) {
			t.Errorf("%s Float64 = %v, %v", c.DType, f64, err)
		}
		i64, err := c.Int64()
		isInt := c.DType == I64 || c.DType == I32
		if isInt && (err != nil || !slices.Equal(i64, []int64{1, -2, 3})) {
			t.Errorf("%s Int64 = %v, %v", c.DType, i64, err)
		}
		if !isInt && err == nil {
			t.Errorf("%s Int64 succeeded on a float tensor", c.DType)
		}
	}
	u8 := NewU8([]uint8{0, 255}, 2)
	if v, _ := u8.Int64(); !slices.Equal(v, []int64{0, 255}) {
		t.Errorf("U8 Int64 = %v", v)
	}
	b := NewBool([]bool{true, false}, 2)
	if v, _ := b.Float32(); !slices.Equal(v, []float32{1, 0}) {
		t.Errorf("Bool Float32 = %v", v)
	}

	// []float32 data is returned without a copy, others are fresh slices.
	d := []float32{1, 2}
	if v, _ := NewF32(d, 2).Float32(); &v[0] != &d[0] {
		t.Error("Float32 copied []float32 data")
	}
	if _, err := (&Tensor{DType: F32, Data: "x"}).Float32(); err == nil {
		t.Error("Float32 accepted string data")
	}

	if n := NewF32([]float32{7}).Len(); n != 1 {
		t.Errorf("scalar Len = %d, want 1", n)
	}
	if n := NewF32(nil, 2, 0, 3).Len(); n != 0 {
		t.Errorf("empty Len = %d, want 0", n)
	}
	shape := []int{2, 3}
	x := NewF32(make([]float32, 6), shape...)
	shape[0] = 99
	if x.Shape[0] != 2 {
		t.Error("NewF32 kept the caller's shape slice")
	}
}

func TestFileNamesAndGet(t *testing.T) {
	f := &File{Path: "/x/w.safetensors", Tensors: map[string]*Tensor{
		"b": NewF32([]float32{1}), "a": NewF32([]float32{2}), "c": NewF32([]float32{3}),
	}}
	if got := f.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Names = %v", got)
	}
	if _, err := f.Get("a"); err != nil {
		t.Error(err)
	}
	_, err := f.Get("nope")
	wantErr(t, err, "/x/w.safetensors", `"nope"`)
}

func TestFileHash(t *testing.T) {
	// The value published in the golden set's meta.json.
	const want = "39cb8aa163657b619426ea380841c8504dbe445e08f31140a4ebe3eb8b3cae84"
	got, err := FileHash(goldenST)
	if err != nil || got != want {
		t.Errorf("FileHash = %s, %v; want %s", got, err, want)
	}
	missing := filepath.Join(t.TempDir(), "none")
	_, err = FileHash(missing)
	wantErr(t, err, missing, "no such file")
}

// Load must go by content, not by extension.
func TestLoadSniffsContent(t *testing.T) {
	st := writeTemp(t, "really-safetensors.pt", mustRead(t, goldenST))
	f, err := Load(st)
	if err != nil || len(f.Tensors) != 52 || f.Metadata == nil {
		t.Fatalf("Load(safetensors named .pt) = %v", err)
	}
	pt := writeTemp(t, "really-pt.safetensors", mustRead(t, goldenPT))
	f, err = Load(pt)
	if err != nil || len(f.Tensors) != 52 || f.Metadata != nil {
		t.Fatalf("Load(pt named .safetensors) = %v", err)
	}
	// The explicit readers do not guess.
	_, err = ReadSafetensors(pt)
	wantErr(t, err, pt, "header")
	_, err = ReadPT(st)
	wantErr(t, err, st, "zip")

	legacy := writeTemp(t, "legacy.pt", []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc})
	_, err = Load(legacy)
	wantErr(t, err, legacy, "legacy")

	empty := writeTemp(t, "empty.zip", []byte("PK\x05\x06"+strings.Repeat("\x00", 18)))
	_, err = Load(empty)
	wantErr(t, err, empty, "not a torch.save file")
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.safetensors")
	for _, load := range []func(string) (*File, error){Load, ReadSafetensors, ReadPT} {
		_, err := load(p)
		wantErr(t, err, p, "open")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v is not fs.ErrNotExist", err)
		}
	}
	dir := t.TempDir()
	_, err := Load(dir)
	wantErr(t, err, dir, "directory")
}

// A safetensors header whose length starts with the bytes of a pickle protocol header
// (0x80 0x02 = 640) is still safetensors.
func TestLoadSafetensorsPickleLookalike(t *testing.T) {
	dir := t.TempDir()
	for pad := 0; pad < 1500; pad += 8 {
		path := filepath.Join(dir, "w.safetensors")
		meta := map[string]string{"pad": strings.Repeat("x", pad)}
		if err := WriteSafetensors(path, map[string]*Tensor{"a": NewF32([]float32{1, 2}, 2)}, meta); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		if data[0] != 0x80 || data[1] > 5 {
			continue
		}
		f, err := Load(path)
		if err != nil {
			t.Fatalf("header length %d: %v", int(data[0])|int(data[1])<<8, err)
		}
		if v, _ := f.Tensors["a"].Float32(); len(v) != 2 || v[1] != 2 {
			t.Fatalf("read back %v", v)
		}
		return
	}
	t.Fatal("no header length hit the pickle lookalike (test needs adjusting)")
}
