package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/clip"
)

// execClip runs one of the CLIP commands in-process and returns its output and error.
func execClip(cmd *cobra.Command, args ...string) (string, error) {
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// clipFixture writes the golden tiny CLIP (formula weights, testdata/clip/README.md), the three
// golden images as PNGs (uint8, 32×32) and their captions.
func clipFixture(t *testing.T) (weights, imgDir, captions string, pix []uint8) {
	t.Helper()
	dir := t.TempDir()
	cfg := clip.Config{EmbedDim: 32, ImageResolution: 32, PatchSize: 8, VisionWidth: 64, VisionLayers: 2, VisionHeads: 1,
		ContextLength: 77, VocabSize: 49408, TextWidth: 64, TextLayers: 2, TextHeads: 4}
	weights = filepath.Join(dir, "tiny-clip.safetensors")
	if err := checkpoint.WriteSafetensors(weights, clip.FormulaWeights(cfg, 3).Tensors, nil); err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "clip/forward.safetensors")
	x := golden.F32(t, g, "images") // preprocessed NCHW; undo the normalisation to get pixels
	imgDir = filepath.Join(dir, "images")
	if err := os.Mkdir(imgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pix = make([]uint8, 3*32*32*3)
	for n := range 3 {
		img := image.NewRGBA(image.Rect(0, 0, 32, 32))
		for y := range 32 {
			for xx := range 32 {
				var c [3]uint8
				for ch := range 3 {
					v := float64(x[((n*3+ch)*32+y)*32+xx])*float64(clip.Std[ch]) + float64(clip.Mean[ch])
					c[ch] = uint8(math.Round(math.Min(math.Max(v, 0), 1) * 255))
					pix[((n*32+y)*32+xx)*3+ch] = c[ch]
				}
				img.Set(xx, y, color.RGBA{c[0], c[1], c[2], 255})
			}
		}
		f, err := os.Create(filepath.Join(imgDir, fmt.Sprintf("%03d.png", n)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	captions = filepath.Join(dir, "captions.txt")
	writeFile(t, captions, "a photo of a cat\na diagram of two red squares on a white table\nan astronaut riding a horse on the moon\n")
	return weights, imgDir, captions, pix
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClipScoreCLI(t *testing.T) {
	weights, imgDir, captions, pix := clipFixture(t)
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	base := []string{"--weights", weights, "--vocab", vocab, "--images", imgDir, "--captions", captions, "--vision-heads", "1", "--text-heads", "4"}

	out, err := execClip(newClipScoreCmd(), append(base, "--json")...)
	if err != nil {
		t.Fatalf("clipscore: %v\n%s", err, out)
	}
	var rep clipScoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}

	// The same computation through the library.
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := clip.Load(b, weights, clip.Config{VisionHeads: 1, TextHeads: 4})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := clip.LoadTokenizer(vocab)
	if err != nil {
		t.Fatal(err)
	}
	img, err := m.EncodeImages(pix, 3, 32, 32, clip.RangeUint8)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := m.EncodeText(tok.Tokenize([]string{"a photo of a cat", "a diagram of two red squares on a white table", "an astronaut riding a horse on the moon"}))
	if err != nil {
		t.Fatal(err)
	}
	want, err := clip.Score(img, txt, 32)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pairs != 3 || len(rep.PerPair) != 3 || rep.ClipScore != want.Mean || rep.MeanPerPairClamped != want.MeanPerPairClamped {
		t.Errorf("report %+v, want score %g / %g over 3 pairs", rep, want.Mean, want.MeanPerPairClamped)
	}
	// uint8 rounding of the golden images moves the scores only slightly from the golden ones.
	goldenRaw := golden.F64(t, golden.Open(t, "clip/forward.safetensors"), "clip_score_raw")
	for i, p := range rep.PerPair {
		if p.Cosine != want.Cosine[i] || math.Abs(p.Score-goldenRaw[i]) > 1 {
			t.Errorf("pair %d: cosine %g (library %g), score %g (golden %g)", i, p.Cosine, want.Cosine[i], p.Score, goldenRaw[i])
		}
	}
	if !strings.HasPrefix(rep.ModelID, "tiny-clip.safetensors sha256:") || len(rep.WeightsSHA256) != 64 || rep.ValueRange != "uint8" {
		t.Errorf("model id %q, sha %q, value range %q", rep.ModelID, rep.WeightsSHA256, rep.ValueRange)
	}

	table, err := execClip(newClipScoreCmd(), base...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CLIP score (torchmetrics)", fmt.Sprintf("%.4f", want.Mean), rep.ModelID, "uint8"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	// The other value range gives other (smaller-contrast) inputs and so another score.
	other, err := execClip(newClipScoreCmd(), append(base, "--json", "--value-range", "unit-rescaled")...)
	if err != nil {
		t.Fatal(err)
	}
	var rep2 clipScoreReport
	if err := json.Unmarshal([]byte(other), &rep2); err != nil {
		t.Fatal(err)
	}
	if rep2.ValueRange != "unit-rescaled" || rep2.PerPair[0].Cosine == rep.PerPair[0].Cosine {
		t.Errorf("unit-rescaled run: %+v", rep2)
	}
}

func TestClipScoreCLIErrors(t *testing.T) {
	weights, imgDir, captions, _ := clipFixture(t)
	dir := t.TempDir()
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	two := filepath.Join(dir, "two.txt")
	writeFile(t, two, "a\nb\n")
	empty := filepath.Join(dir, "empty.txt")
	writeFile(t, empty, "")
	missingVocab := filepath.Join(dir, "no-vocab.txt.gz")
	args := func(vocab, caps string, extra ...string) []string {
		return append([]string{"--weights", weights, "--vocab", vocab, "--images", imgDir, "--captions", caps}, extra...)
	}
	heads := []string{"--vision-heads", "1", "--text-heads", "4"}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing vocab file", args(missingVocab, captions, heads...), []string{missingVocab}},
		{"caption count", args(vocab, two, heads...), []string{two, "2 captions", "3 images"}},
		{"empty captions", args(vocab, empty, heads...), []string{empty, "empty"}},
		{"no heads", args(vocab, captions), []string{"--vision-heads"}},
		{"preset mismatch", args(vocab, captions, "--preset", "ViT-B/32"), []string{weights, "config field"}},
		{"bad range", args(vocab, captions, append(heads, "--value-range", "0-1")...), []string{"--value-range"}},
		{"no weights flag", []string{"--vocab", vocab, "--images", imgDir, "--captions", captions}, []string{"--weights"}},
	} {
		out, err := execClip(newClipScoreCmd(), c.args...)
		if err == nil {
			t.Errorf("%s: no error\n%s", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

func TestTokenizeCLI(t *testing.T) {
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	out, err := execClip(newTokenizeCmd(), "--vocab", vocab, "a photo of a cat", "")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := golden.I64(t, golden.Open(t, "clip/forward.safetensors"), "tokens")[:77]
	if len(lines) != 2 || len(strings.Fields(lines[0])) != 77 || len(strings.Fields(lines[1])) != 77 {
		t.Fatalf("want two rows of 77 ids:\n%s", out)
	}
	for j, f := range strings.Fields(lines[0]) {
		if f != fmt.Sprint(want[j]) {
			t.Fatalf("position %d: %s, want %d\n%s", j, f, want[j], lines[0])
		}
	}
	if !strings.HasPrefix(lines[1], "49406 49407 0 ") {
		t.Errorf("empty text row %q", lines[1])
	}

	long := strings.Repeat("word ", 100)
	out, err = execClip(newTokenizeCmd(), "--vocab", vocab, "--json", long, "hi")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Text      string
		Tokens    []int32
		Length    int
		Truncated bool
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rows) != 2 || !rows[0].Truncated || rows[0].Length != 77 || rows[0].Tokens[76] != clip.EOT || rows[1].Truncated || rows[1].Length != 3 {
		t.Errorf("json rows %+v", rows)
	}

	missing := filepath.Join(t.TempDir(), "none.txt.gz")
	if _, err := execClip(newTokenizeCmd(), "--vocab", missing, "x"); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing vocab: %v", err)
	}
	if _, err := execClip(newTokenizeCmd(), "x"); err == nil || !strings.Contains(err.Error(), "--vocab") {
		t.Errorf("no --vocab: %v", err)
	}
	if _, err := execClip(newTokenizeCmd(), "--vocab", vocab); err == nil {
		t.Error("no texts accepted")
	}
}
