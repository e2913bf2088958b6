package checkpoint

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// checkFuzzResult asserts the error style, or that a successful read is self-consistent.
func checkFuzzResult(t *testing.T, name string, f *File, err error) {
	t.Helper()
	if err != nil {
		if !strings.HasPrefix(err.Error(), "checkpoint: "+name+": ") {
			t.Fatalf("error without the file prefix: %v", err)
		}
		return
	}
	for k, x := range f.Tensors {
		if err := checkTensor(k, x); err != nil {
			t.Fatalf("reader returned an inconsistent tensor: %v", err)
		}
	}
}

func FuzzReadSafetensors(f *testing.F) {
	var b bytes.Buffer
	if err := encodeSafetensors(&b, roundTripTensors(), map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	b.Reset()
	encodeSafetensors(&b, map[string]*Tensor{"s": NewF64([]float64{1}), "e": NewU8([]uint8{}, 0)}, nil)
	f.Add(b.Bytes())
	f.Add(stImage(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(binary.LittleEndian.AppendUint64(nil, 2))
	// A few tensors of the golden file with its metadata: the whole 1.3 MB file
	// makes every mutation and minimization of it slow.
	golden, err := ReadSafetensors(goldenST)
	if err != nil {
		f.Fatal(err)
	}
	b.Reset()
	encodeSafetensors(&b, map[string]*Tensor{"x_embedder.proj.bias": golden.Tensors["x_embedder.proj.bias"], "final_layer.linear.bias": golden.Tensors["final_layer.linear.bias"]}, golden.Metadata)
	f.Add(b.Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.safetensors"
		file, err := readSafetensors(name, bytes.NewReader(data), int64(len(data)))
		checkFuzzResult(t, name, file, err)
		if err != nil {
			return
		}
		// Whatever the reader accepts, the writer must reproduce.
		var out bytes.Buffer
		if err := encodeSafetensors(&out, file.Tensors, file.Metadata); err != nil {
			t.Fatalf("cannot write back what was read: %v", err)
		}
		again, err := readSafetensors(name, bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("cannot read back what was written: %v", err)
		}
		sameTensors(t, file.Tensors, again.Tensors)
		if len(again.Metadata) != len(file.Metadata) {
			t.Fatalf("metadata %v became %v", file.Metadata, again.Metadata)
		}
		for k, v := range file.Metadata {
			if again.Metadata[k] != v {
				t.Fatalf("metadata %q: %q became %q", k, v, again.Metadata[k])
			}
		}
	})
}

// ptFuzzSeeds are small torch.save archives covering the reader's paths.
func ptFuzzSeeds(f *testing.F) [][]byte {
	storages, sd, _ := dtypeStorages(binary.LittleEndian)
	s := f32Storage("v", 0, 1, 2, 3, 4, 5)
	return [][]byte{
		ptArchiveBytes(f, pyDict{{"model", pyDict{{"w", contiguousTensor(testOnes, 2, 2)}}}, {"ema", pyDict(testSD("module."))}, {"args", namespace}}, testStores, nil),
		ptArchiveBytes(f, sd, storages, map[string][]byte{"archive/byteorder": []byte("little")}),
		ptArchiveBytes(f, pyBuild{pyODict{{"t", tensorV2(s, 1, []int{2, 2}, []int{1, 2})}, {"b", tensorV2(s, 0, []int{3, 2}, []int{0, 1})}}, pyDict{{"_metadata", pyDict{}}}}, []testStorage{s}, nil),
	}
}

func FuzzReadPT(f *testing.F) {
	for _, s := range ptFuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.pt"
		file, err := readPT(name, bytes.NewReader(data), int64(len(data)))
		checkFuzzResult(t, name, file, err)
	})
}

// FuzzReadPTPickle fuzzes data.pkl inside a well-formed archive: mutating a
// whole archive mostly just breaks the zip CRCs, so the pickle is reached rarely.
func FuzzReadPTPickle(f *testing.F) {
	f.Add(pickleBytes(pyDict{{"model", pyDict{{"w", contiguousTensor(testOnes, 2, 2)}}}, {"ema", pyDict(testSD(""))}, {"args", namespace}}))
	f.Add(pickleBytes(pyBuild{pyODict(testSD("module.")), pyDict{{"_metadata", pyODict{{"", pyDict{{"version", 1}}}}}}}))
	f.Add(pickleBytes(pyDict{{"w", tensorV2(testW, 1, []int{2, 1}, []int{2, 0})}, {"p", pyCall{pyGlobal{"torch._utils", "_rebuild_parameter"}, []any{contiguousTensor(testB, 2), true, pyODict{}}}}}))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		const name = "fuzz.pt"
		image := ptArchiveBytes(t, rawPickle(pkl), testStores, nil)
		file, err := readPT(name, bytes.NewReader(image), int64(len(image)))
		checkFuzzResult(t, name, file, err)
	})
}
