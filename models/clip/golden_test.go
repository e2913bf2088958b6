package clip

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// goldenConfig is testdata/clip/README.md's tiny model. Its text heads (4) are not width/64.
var goldenConfig = Config{EmbedDim: 32, ImageResolution: 32, PatchSize: 8, VisionWidth: 64, VisionLayers: 2, VisionHeads: 1,
	ContextLength: 77, VocabSize: 49408, TextWidth: 64, TextLayers: 2, TextHeads: 4}

// goldenHeads is what a user passes: the heads only; the rest is read off the file.
var goldenHeads = Config{VisionHeads: 1, TextHeads: 4}

var (
	goldenOnce sync.Once
	goldenSD   *checkpoint.File
	goldenPath string
	goldenDir  string
)

// goldenWeights regenerates the formula weights and writes them once to a temporary safetensors
// file (OpenAI names plus the JIT scalar entries a user's converted file may carry).
func goldenWeights(t testing.TB) (*checkpoint.File, string) {
	t.Helper()
	goldenOnce.Do(func() {
		goldenSD = FormulaWeights(goldenConfig, 3)
		dir, err := os.MkdirTemp("", "clip-golden-")
		if err != nil {
			t.Fatal(err)
		}
		goldenDir = dir
		withJIT := map[string]*checkpoint.Tensor{
			"input_resolution": checkpoint.NewI64([]int64{32}),
			"context_length":   checkpoint.NewI64([]int64{77}),
			"vocab_size":       checkpoint.NewI64([]int64{49408}),
		}
		for k, v := range goldenSD.Tensors {
			withJIT[k] = v
		}
		goldenPath = filepath.Join(dir, "tiny-clip.safetensors")
		if err := checkpoint.WriteSafetensors(goldenPath, withJIT, nil); err != nil {
			t.Fatal(err)
		}
	})
	if goldenPath == "" {
		t.Fatal("golden weights were not written")
	}
	return goldenSD, goldenPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if goldenDir != "" {
		os.RemoveAll(goldenDir)
	}
	os.Exit(code)
}

func loadModel(t testing.TB, path string, heads Config) *Model {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b, path, heads)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The regenerated weights must match the README's checksums bit for bit.
func TestFormulaWeightsChecksums(t *testing.T) {
	sd, _ := goldenWeights(t)
	var keys struct {
		Keys []struct {
			P        int
			Key      string
			Shape    []int
			RawSum   float64 `json:"sum"`
			RawSumSq float64 `json:"sum_sq"`
		}
	}
	readJSON(t, "clip/weights_keys.json", &keys)
	var meta struct {
		Model struct {
			Weights struct {
				Checksums struct {
					Keys        int
					Elements    int     `json:"float_elements"`
					SHA         string  `json:"sha256_le_bytes_in_p_order"`
					Sum         float64 `json:"sum"`
					SumSq       float64 `json:"sum_sq"`
					FirstValues map[string]struct {
						Bits []string `json:"float32_bits"`
					} `json:"first_values"`
				}
			}
		}
	}
	readJSON(t, "clip/meta.json", &meta)
	ck := meta.Model.Weights.Checksums
	names := sd.Names()
	if len(names) != ck.Keys || len(keys.Keys) != ck.Keys {
		t.Fatalf("%d keys regenerated, %d listed, meta says %d", len(names), len(keys.Keys), ck.Keys)
	}
	h := sha256.New()
	var sum, sumSq float64
	elems := 0
	for p, name := range names {
		k := keys.Keys[p]
		x := sd.Tensors[name]
		if k.P != p || k.Key != name || !slices.Equal(k.Shape, x.Shape) {
			t.Fatalf("key %d: %s %v, want %s %v (p=%d)", p, name, x.Shape, k.Key, k.Shape, k.P)
		}
		data := x.Data.([]float32)
		var ts, tss float64
		for _, v := range data {
			ts += float64(v)
			tss += float64(v) * float64(v)
			_ = binary.Write(h, binary.LittleEndian, v)
		}
		if !relClose(ts, k.RawSum, 1e-9) || !relClose(tss, k.RawSumSq, 1e-9) {
			t.Errorf("%s: sum %.17g / sum_sq %.17g, want %.17g / %.17g", name, ts, tss, k.RawSum, k.RawSumSq)
		}
		sum += ts
		sumSq += tss
		elems += len(data)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != ck.SHA {
		t.Errorf("sha256 %s, want %s", got, ck.SHA)
	}
	if elems != ck.Elements || !relClose(sum, ck.Sum, 1e-9) || !relClose(sumSq, ck.SumSq, 1e-9) {
		t.Errorf("%d elements, sum %.17g, sum_sq %.17g; want %d, %.17g, %.17g", elems, sum, sumSq, ck.Elements, ck.Sum, ck.SumSq)
	}
	for name, fv := range ck.FirstValues {
		data := sd.Tensors[name].Data.([]float32)
		for i, b := range fv.Bits {
			if got := fmt.Sprintf("0x%08x", math.Float32bits(data[i])); got != b {
				t.Errorf("%s[%d] bits %s, want %s", name, i, got, b)
			}
		}
	}
}

func readJSON(t testing.TB, rel string, v any) {
	t.Helper()
	raw, err := os.ReadFile(golden.Path(rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func relClose(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Max(math.Abs(want), 1e-300)
}

// goldenForward runs both encoders with intermediates on the golden inputs.
func goldenForward(t *testing.T, m *Model) (img, txt []float32, probes map[string][]float32) {
	t.Helper()
	g := golden.Open(t, "clip/forward.safetensors")
	x := golden.F32(t, g, "images")
	outs, err := m.runImages(x, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	probes = map[string][]float32{}
	names := []string{"visual.tokens", "visual.ln_pre"}
	for l := range m.VisionLayers {
		names = append(names, fmt.Sprintf("visual.block_%d", l))
	}
	names = append(names, "visual.ln_post")
	for i, n := range names {
		probes[n] = outs[i+1]
	}
	img = outs[0]
	ids := golden.I64(t, g, "tokens")
	rows := make([][]int32, 3)
	flat := make([]int32, len(ids))
	for i, v := range ids {
		flat[i] = int32(v)
	}
	for i := range rows {
		rows[i] = flat[i*77 : (i+1)*77]
	}
	eot := make([]int32, 3)
	for i, r := range rows {
		eot[i] = int32(slices.Index(r, EOT))
	}
	if want := golden.I64(t, g, "eot_index"); fmt.Sprint(eot) != fmt.Sprint(want) {
		t.Errorf("eot index %v, want %v", eot, want)
	}
	touts, err := m.runText(flat, eot, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	for l := range m.TextLayers {
		probes[fmt.Sprintf("text.block_%d", l)] = touts[l+1]
	}
	probes["text.ln_final"] = touts[m.TextLayers+1]
	txt = touts[0]
	// The public entry points must agree with the probed graphs.
	pubImg, err := m.EncodePreprocessed(x, 3)
	if err != nil {
		t.Fatal(err)
	}
	pubTxt, err := m.EncodeText(rows)
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(pubImg, img); e > 1e-6 {
		t.Errorf("EncodePreprocessed differs from the probed graph by %g", e)
	}
	if e := golden.MaxAbs(pubTxt, txt); e > 1e-6 {
		t.Errorf("EncodeText differs from the probed graph by %g", e)
	}
	return img, txt, probes
}

func TestForwardGolden(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	if m.Config != goldenConfig {
		t.Fatalf("inferred %s, want %s", m.Config, goldenConfig)
	}
	g := golden.Open(t, "clip/forward.safetensors")
	img, txt, probes := goldenForward(t, m)
	probes["image_features"], probes["text_features"] = img, txt
	probes["image_features_normalized"], probes["text_features_normalized"] = normalize(img, 32), normalize(txt, 32)
	for _, name := range golden.Open(t, "clip/forward.safetensors").Names() {
		got, ok := probes[name]
		if !ok {
			continue
		}
		e := golden.RelToMax(got, golden.F32(t, g, name))
		t.Logf("%-28s rel-to-max error %.3g", name, e)
		if e > 1e-5 {
			t.Errorf("%s: rel-to-max error %.3g > 1e-5", name, e)
		}
	}

	s, err := Score(img, txt, 32)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []float64, tol float64) {
		e := golden.MaxAbs(got, golden.F64(t, g, name))
		t.Logf("%-28s abs error %.3g", name, e)
		if e > tol {
			t.Errorf("%s: abs error %.3g > %g (got %v)", name, e, tol, got)
		}
	}
	raw, perPair := make([]float64, 3), make([]float64, 3)
	for i, c := range s.Cosine {
		raw[i], perPair[i] = 100*c, max(100*c, 0)
	}
	check("cosine", s.Cosine, 1e-6)
	check("clip_score_raw", raw, 1e-4)
	check("clip_score_per_pair", perPair, 1e-4)
	check("clip_score_torchmetrics", []float64{s.Mean}, 1e-4)
	logits, err := m.Logits(img, txt)
	if err != nil {
		t.Fatal(err)
	}
	check("logits_per_image", logits, 1e-5)
	if math.Abs(s.MeanPerPairClamped-(perPair[0]+perPair[1]+perPair[2])/3) > 1e-9 || s.MeanPerPairClamped < 5 {
		t.Errorf("mean of clamped pairs %g, want about 5.68", s.MeanPerPairClamped)
	}
}

// build_model's head inference (width/64 = 1 text head) computes another model.
func TestWrongTextHeadsDiffer(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, Config{VisionHeads: 1, TextHeads: 1})
	g := golden.Open(t, "clip/forward.safetensors")
	_, txt, _ := goldenForward(t, m)
	if e := golden.RelToMax(txt, golden.F32(t, g, "text_features")); e < 1e-3 {
		t.Errorf("text features with 1 head match the 4-head golden (error %.3g)", e)
	}
}

func normalize(x []float32, d int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < len(x); i += d {
		var n float64
		for _, v := range x[i : i+d] {
			n += float64(v) * float64(v)
		}
		for j, v := range x[i : i+d] {
			out[i+j] = float32(float64(v) / math.Sqrt(n))
		}
	}
	return out
}

// HF names round-trip bit for bit, and a HF-named file gives the same features as the OpenAI one.
func TestHFMapping(t *testing.T) {
	sd, path := goldenWeights(t)
	hf, err := OpenAIToHF(sd.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"vision_model.pre_layrnorm.weight", "visual_projection.weight", "text_projection.weight",
		"vision_model.encoder.layers.1.self_attn.k_proj.weight", "text_model.encoder.layers.0.mlp.fc2.bias", "logit_scale"} {
		if _, ok := hf[k]; !ok {
			t.Errorf("HF mapping lacks %q", k)
		}
	}
	if s := hf["visual_projection.weight"].Shape; fmt.Sprint(s) != "[32 64]" {
		t.Errorf("visual_projection.weight shape %v, want [32 64] ([out, in])", s)
	}
	if len(hf) != len(sd.Tensors)+4*2*2 { // each in_proj weight and bias becomes three
		t.Errorf("%d HF tensors from %d OpenAI ones", len(hf), len(sd.Tensors))
	}
	back, err := HFToOpenAI(hf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(sd.Tensors) {
		t.Fatalf("round trip gives %d tensors, want %d", len(back), len(sd.Tensors))
	}
	for k, want := range sd.Tensors {
		got, ok := back[k]
		if !ok || !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.Data.([]float32), want.Data.([]float32)) {
			t.Errorf("round trip changed %q", k)
		}
	}
	hf["vision_model.embeddings.position_ids"] = checkpoint.NewI64(make([]int64, 17), 1, 17)
	hfPath := filepath.Join(t.TempDir(), "model.safetensors")
	if err := checkpoint.WriteSafetensors(hfPath, hf, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	a, b := loadModel(t, path, goldenHeads), loadModel(t, hfPath, goldenHeads)
	if a.Config != b.Config {
		t.Fatalf("configs differ: %s vs %s", a.Config, b.Config)
	}
	x := golden.F32(t, golden.Open(t, "clip/forward.safetensors"), "images")
	ia, _ := a.EncodePreprocessed(x, 3)
	ib, _ := b.EncodePreprocessed(x, 3)
	tok := goldenTokenizer(t).Tokenize([]string{"a photo of a cat", "two dogs"})
	ta, _ := a.EncodeText(tok)
	tb, _ := b.EncodeText(tok)
	if !slices.Equal(ia, ib) || !slices.Equal(ta, tb) || len(ia) != 96 || len(ta) != 64 {
		t.Errorf("HF-named weights give other features (image diff %g, text diff %g)", golden.MaxAbs(ia, ib), golden.MaxAbs(ta, tb))
	}
}

// The golden token rows of forward.safetensors are the tokenizer's output for meta.json's captions.
func TestForwardTokensFromTokenizer(t *testing.T) {
	var meta struct{ Model struct{ Captions []string } }
	readJSON(t, "clip/meta.json", &meta)
	rows := goldenTokenizer(t).Tokenize(meta.Model.Captions)
	want := golden.I64(t, golden.Open(t, "clip/forward.safetensors"), "tokens")
	for i, r := range rows {
		for j, v := range r {
			if int64(v) != want[i*77+j] {
				t.Fatalf("caption %d position %d: %d, want %d", i, j, v, want[i*77+j])
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	sd, path := goldenWeights(t)
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, m map[string]*checkpoint.Tensor) string {
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, m, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	without := func(drop string) map[string]*checkpoint.Tensor {
		m := map[string]*checkpoint.Tensor{}
		for k, v := range sd.Tensors {
			if k != drop {
				m[k] = v
			}
		}
		return m
	}
	nan := without("ln_final.bias")
	nan["ln_final.bias"] = checkpoint.NewF32(append([]float32{float32(math.NaN())}, make([]float32, 63)...), 64)
	hfMissing, _ := OpenAIToHF(sd.Tensors)
	delete(hfMissing, "text_model.encoder.layers.1.self_attn.v_proj.bias")
	for _, c := range []struct {
		name string
		path string
		cfg  Config
		want string
	}{
		{"no heads", path, Config{}, "heads"},
		{"bad heads", path, Config{VisionHeads: 3, TextHeads: 4}, "divide"},
		{"wrong preset", path, Config{VisionHeads: 1, TextHeads: 4, VisionWidth: 768}, "VisionWidth"},
		{"missing tensor", write("missing.safetensors", without("visual.ln_post.bias")), goldenHeads, `missing tensor "visual.ln_post.bias"`},
		{"no conv", write("noconv.safetensors", without("visual.conv1.weight")), goldenHeads, "visual.conv1.weight"},
		{"non-finite", write("nan.safetensors", nan), goldenHeads, "non-finite"},
		{"hf missing v", write("hf.safetensors", hfMissing), goldenHeads, "v_proj"},
		{"not a file", filepath.Join(dir, "nope.safetensors"), goldenHeads, "nope.safetensors"},
	} {
		_, err := Load(b, c.path, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	if _, err := m.EncodeText([][]int32{{SOT, 50000, EOT}}); err == nil || !strings.Contains(err.Error(), "50000") {
		t.Errorf("out-of-range id: %v", err)
	}
	if _, err := m.EncodeText([][]int32{make([]int32, 78)}); err == nil {
		t.Error("78-token row accepted")
	}
	if _, err := m.EncodeText(nil); err == nil {
		t.Error("no rows accepted")
	}
	if _, err := m.EncodePreprocessed(make([]float32, 10), 1); err == nil {
		t.Error("short image accepted")
	}
	if _, err := m.EncodeImages(make([]uint8, 5), 1, 2, 2, RangeUint8); err == nil {
		t.Error("short pixel buffer accepted")
	}
	// Short rows are padded; padding after EOT cannot change the feature (causal mask).
	full := goldenTokenizer(t).Tokenize([]string{"a photo of a cat"})
	a, err := m.EncodeText(full)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.EncodeText([][]int32{full[0][:7]})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(a, b); e > 1e-6 {
		t.Errorf("short row differs from the padded one by %g", e)
	}
	// Batching splits must not change results.
	m.BatchSize = 2
	x := golden.F32(t, golden.Open(t, "clip/forward.safetensors"), "images")
	split, err := m.EncodePreprocessed(x, 3)
	if err != nil {
		t.Fatal(err)
	}
	m.BatchSize = 0
	whole, _ := m.EncodePreprocessed(x, 3)
	if e := golden.MaxAbs(split, whole); e > 1e-6 {
		t.Errorf("batch split changes image features by %g", e)
	}
}
