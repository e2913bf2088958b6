package captions

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// goldenPath is written by `python3 tools/fmnist_text.py --golden`; the Go encoder must
// reproduce it bit for bit, since training (Python) and sampling (Go) share the encoder.
const goldenPath = "testdata/fmnist_text_golden.npz"

func readGolden(t *testing.T) (captions, vocab []string, feat []float32, valid []int64) {
	t.Helper()
	m, _, err := readNpz(goldenPath, "captions", "vocab", "features", "valid")
	if err != nil {
		t.Fatal(err)
	}
	lines := func(k string) []string {
		tt := m[k]
		if tt == nil || tt.DType != checkpoint.U8 {
			t.Fatalf("%s: field %q missing or not uint8", goldenPath, k)
		}
		return strings.Split(string(tt.Data.([]uint8)), "\n")
	}
	captions, vocab = lines("captions"), lines("vocab")
	f, v := m["features"], m["valid"]
	if f == nil || v == nil || f.DType != checkpoint.F32 || !slices.Equal(f.Shape, []int{len(captions), TinyMaxLen, TinyWidth}) {
		t.Fatalf("%s: features %v, want float32 [%d, %d, %d]", goldenPath, f, len(captions), TinyMaxLen, TinyWidth)
	}
	valid, err = v.Int64()
	if err != nil || len(valid) != len(captions) {
		t.Fatalf("%s: valid %v (%v), want %d counts", goldenPath, v, err, len(captions))
	}
	return captions, vocab, f.Data.([]float32), valid
}

func TestTinyEncoderMatchesPython(t *testing.T) {
	captions, vocab, feat, valid := readGolden(t)
	var e TinyEncoder
	if !slices.Equal(e.Vocab(), vocab) {
		t.Fatalf("vocabulary %q, Python's is %q", e.Vocab(), vocab)
	}
	// The golden file starts with every (class, template) caption, class-major.
	for c := range TinyClasses {
		for tpl := range TinyTemplates {
			got, err := TinyCaption(c, tpl)
			if want := captions[c*len(TinyTemplates)+tpl]; err != nil || got != want {
				t.Fatalf("TinyCaption(%d, %d) = %q, %v; Python's is %q", c, tpl, got, err, want)
			}
		}
	}
	n := TinyMaxLen * TinyWidth
	for i, c := range captions {
		got, v, err := e.Encode(c)
		if err != nil {
			t.Fatalf("caption %q: %v", c, err)
		}
		if int64(v) != valid[i] {
			t.Fatalf("caption %q: %d words, Python counts %d", c, v, valid[i])
		}
		for k, x := range got {
			if want := feat[i*n+k]; math.Float32bits(x) != math.Float32bits(want) {
				t.Fatalf("caption %q: token %d channel %d = %v (%#x), Python's is %v (%#x)",
					c, k/TinyWidth, k%TinyWidth, x, math.Float32bits(x), want, math.Float32bits(want))
			}
		}
	}
}

// TestPythonTwinAgrees runs the committed Python encoder against the committed golden file, so
// that neither can drift alone; it needs a python3 with numpy (Debian's /usr/bin/python3 has it).
func TestPythonTwinAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting Python (run without -short, with python3-numpy installed, to compare the Python twin)")
	}
	var py string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with numpy: install the Debian package python3-numpy (.ci/run does) to compare tools/fmnist_text.py with the Go encoder")
	}
	golden, err := filepath.Abs(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "../tools/fmnist_text.py", "--check", golden).CombinedOutput()
	if err != nil {
		t.Fatalf("tools/fmnist_text.py --check: %v\n%s", err, out)
	}
}

func TestTinyVocabIsTheTemplateAndClassWords(t *testing.T) {
	set := map[string]bool{}
	for _, s := range append(TinyTemplates[:], TinyClasses[:]...) {
		for _, w := range tinyWords(strings.ReplaceAll(s, "{}", " ")) {
			set[w] = true
		}
	}
	var want []string
	for w := range set {
		want = append(want, w)
	}
	slices.Sort(want)
	if !slices.Equal(tinyVocab, want) {
		t.Fatalf("tinyVocab %q, want the words of the templates and classes %q", tinyVocab, want)
	}
}

func TestTinyEncoder(t *testing.T) {
	var e TinyEncoder
	a, n, err := e.Encode("A Bag")
	if err != nil || n != 2 {
		t.Fatalf("Encode: %d words, %v", n, err)
	}
	b, _, _ := e.Encode("bag a")
	if slices.Equal(a[:2*TinyWidth], b[:2*TinyWidth]) {
		t.Fatal("word order does not change the features")
	}
	for k, v := range a[2*TinyWidth:] {
		if v != 0 {
			t.Fatalf("padding value %d = %v, want 0", k, v)
		}
	}
	// The table is unit-variance noise, not all zeros or a constant.
	var sum, sq float64
	for _, v := range tinyVector("bag") {
		sum += v
		sq += v * v
	}
	if mean, variance := sum/TinyWidth, sq/TinyWidth-(sum/TinyWidth)*(sum/TinyWidth); math.Abs(mean) > 0.6 || variance < 0.4 || variance > 2 {
		t.Fatalf("vector of %q has mean %v and variance %v, want about 0 and 1", "bag", mean, variance)
	}

	_, _, err = e.Encode("a photo of a cat")
	wantErr(t, err, `word "cat" is not in the tiny encoder's vocabulary`, "a and ankle background bag")
	_, _, err = e.Encode(strings.Repeat("bag ", TinyMaxLen+1))
	wantErr(t, err, "has 13 words, the tiny encoder takes at most 12")
	_, _, err = e.Encode(" 42 !")
	wantErr(t, err, "has no words")

	_, err = TinyCaption(10, 0)
	wantErr(t, err, "class 10, want a Fashion-MNIST label 0 to 9")
	_, err = TinyCaption(0, -1)
	wantErr(t, err, "template -1, want 0 to 3")
}

func TestTinyEncoderFeatures(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prompts.txt")
	if err := os.WriteFile(path, []byte("a photo of a Sneaker\nAnkle boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prompts, err := ReadPrompts(path)
	if err != nil {
		t.Fatal(err)
	}
	var e TinyEncoder
	f, err := e.Features(prompts)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(prompts, f, TinyWidth, TinyMaxLen); err != nil {
		t.Fatal(err)
	}
	want, _, _ := e.Encode(prompts[1])
	if f.Valid(0) != 5 || f.Valid(1) != 2 || !slices.Equal(f.Padded(1), want) {
		t.Fatalf("valid %d, %d; want 5, 2 and caption 1 padded like Encode", f.Valid(0), f.Valid(1))
	}
	_, err = e.Features([]string{"bag", "a dog"})
	wantErr(t, err, "captions: prompt 1: caption \"a dog\": word \"dog\"")
}
