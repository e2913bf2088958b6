package clip

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// goldenRows are forward.safetensors' three token rows (clip.tokenize, zero padding).
func goldenRows(t *testing.T) [][]int32 {
	t.Helper()
	ids := golden.I64(t, golden.Open(t, "clip/forward.safetensors"), "tokens")
	rows := make([][]int32, len(ids)/77)
	for i := range rows {
		for _, v := range ids[i*77 : (i+1)*77] {
			rows[i] = append(rows[i], int32(v))
		}
	}
	return rows
}

// The last hidden state is the golden text.ln_final (the reference's intermediate) and the
// probed graph's own ln_final, which feeds the golden-tested pooled features.
func TestHiddenStatesGolden(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	rows := goldenRows(t)
	h, err := m.HiddenStates(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3*77*64 {
		t.Fatalf("%d values, want 3·77·64", len(h))
	}
	want := golden.F32(t, golden.Open(t, "clip/forward.safetensors"), "text.ln_final")
	e := golden.RelToMax(h, want)
	t.Logf("last hidden state rel-to-max error %.3g", e)
	if e > 1e-5 {
		t.Errorf("last hidden state: rel-to-max error %.3g > 1e-5", e)
	}
	_, _, probes := goldenForward(t, m)
	if !slices.Equal(h, probes["text.ln_final"]) {
		t.Errorf("HiddenStates differs from the pooled path's ln_final by %g (want bit for bit)", golden.MaxAbs(h, probes["text.ln_final"]))
	}
}

// The pooled text feature is the last hidden state at the first EOT times text_projection, for
// zero padding (clip.tokenize) and EOT padding (Stable Diffusion) alike.
func TestPooledIsHiddenAtEOT(t *testing.T) {
	sd, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	proj := sd.Tensors["text_projection"].Data.([]float32) // [64, 32], used as x @ P
	tok := goldenTokenizer(t)
	texts := []string{"a photo of a cat", "", strings.Repeat("an astronaut riding a horse on the moon, ", 12)}
	for _, pad := range []int32{0, EOT} {
		rows := tok.TokenizePad(texts, pad)
		pooled, err := m.EncodeText(rows)
		if err != nil {
			t.Fatal(err)
		}
		h, err := m.HiddenStates(rows)
		if err != nil {
			t.Fatal(err)
		}
		var viaHidden []float32
		for i, row := range rows {
			eot := slices.Index(row, EOT)
			x := h[(i*77+eot)*64 : (i*77+eot+1)*64]
			for j := range 32 {
				var s float64
				for k, v := range x {
					s += float64(v) * float64(proj[k*32+j])
				}
				viaHidden = append(viaHidden, float32(s))
			}
		}
		if e := golden.RelToMax(viaHidden, pooled); e > 1e-5 {
			t.Errorf("pad %d: hidden[EOT]·text_projection differs from EncodeText by rel-to-max %.3g > 1e-5", pad, e)
		} else {
			t.Logf("pad %d: hidden[EOT]·text_projection vs EncodeText rel-to-max %.3g", pad, e)
		}
	}
	// The EOT-padded rows' pooled features equal the golden zero-padded ones (causal mask).
	var meta struct{ Model struct{ Captions []string } }
	readJSON(t, "clip/meta.json", &meta)
	a, _ := m.EncodeText(tok.TokenizePad(meta.Model.Captions, EOT))
	if e := golden.RelToMax(a, golden.F32(t, golden.Open(t, "clip/forward.safetensors"), "text_features")); e > 1e-5 {
		t.Errorf("EOT-padded pooled features differ from the golden by rel-to-max %.3g", e)
	}
}

// SD v1's rows: 77 ids, SOT, the BPE ids, EOT, then EOT to the end; a text over 75 ids keeps
// its first 75 and ends in EOT at position 76, exactly as HF's CLIPTokenizer with
// truncation=True (and clip.tokenize with truncate=True) do.
func TestTokenizePadSD(t *testing.T) {
	tok := goldenTokenizer(t)
	long := strings.Repeat("a red square next to a blue circle ", 20)
	rows := tok.TokenizePad([]string{"a photo of a cat", long}, EOT)
	short := tok.Encode("a photo of a cat")
	want := append(append([]int32{SOT}, short...), EOT)
	for len(want) < 77 {
		want = append(want, EOT)
	}
	if !slices.Equal(rows[0], want) {
		t.Errorf("short prompt: %v, want %v", rows[0], want)
	}
	ids := tok.Encode(long)
	if len(ids) <= 75 {
		t.Fatalf("long prompt has %d ids, want > 75", len(ids))
	}
	if r := rows[1]; len(r) != 77 || r[0] != SOT || r[76] != EOT || !slices.Equal(r[1:76], ids[:75]) || slices.Contains(r[1:76], EOT) {
		t.Errorf("long prompt: %v, want SOT, its first 75 ids, EOT", r)
	}
	// Against the golden clip.tokenize rows: equal up to the first EOT, EOT instead of 0 after it.
	caps := goldenCaptions(t)
	texts := make([]string, len(caps))
	for i, c := range caps {
		texts[i] = c.Text
	}
	ref := golden.I64(t, golden.Open(t, "clip/tokenizer.safetensors"), "tokens")
	truncated := 0
	for i, r := range tok.TokenizePad(texts, EOT) {
		// The appended EOT, not the first one: a caption may spell <|endoftext|> itself.
		end := min(caps[i].Untruncated, 77) - 1
		if caps[i].Truncated {
			truncated++
			if end != 76 || r[76] != EOT || slices.Contains(r[1:76], EOT) {
				t.Errorf("caption %d (truncated): %v, want EOT only at 76", i, r)
			}
		}
		for j, v := range r {
			w := int32(ref[i*77+j])
			if (j <= end && v != w) || (j > end && (v != EOT || w != 0)) {
				t.Errorf("caption %d position %d: %d, golden clip.tokenize %d", i, j, v, w)
				break
			}
		}
	}
	if truncated == 0 {
		t.Error("no golden caption is truncated; the truncation case went untested")
	}
}

// The state at positions after EOT depends on the padding id; the state up to EOT does not.
func TestHiddenStatesPadding(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	tok := goldenTokenizer(t)
	zero := tok.TokenizePad([]string{"a photo of a cat"}, 0)
	eotPad := tok.TokenizePad([]string{"a photo of a cat"}, EOT)
	a, err := m.HiddenStates(zero)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.HiddenStates(eotPad)
	if err != nil {
		t.Fatal(err)
	}
	eot := slices.Index(zero[0], EOT)
	if e := golden.MaxAbs(a[:(eot+1)*64], b[:(eot+1)*64]); e > 1e-6 {
		t.Errorf("positions up to EOT differ by %g between paddings", e)
	}
	if e := golden.MaxAbs(a[(eot+1)*64:], b[(eot+1)*64:]); e < 1e-3 {
		t.Errorf("positions after EOT agree (%g) between 0 and EOT padding; the test cannot tell the conventions apart", e)
	}
	// Batch splits do not change results.
	rows := tok.TokenizePad([]string{"one", "two dogs", "three red cats"}, EOT)
	whole, _ := m.HiddenStates(rows)
	enc := m.TextEncoder()
	enc.BatchSize = 2
	split, err := enc.HiddenStates(rows)
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(whole, split); e > 1e-6 {
		t.Errorf("batch split changes hidden states by %g", e)
	}
}

// textFiles writes the golden text tower in every supported layout, built from the golden
// OpenAI-named weights with the package's own mapping.
func textFiles(t *testing.T) map[string]string {
	t.Helper()
	sd, openai := goldenWeights(t)
	hf, err := OpenAIToHF(sd.Tensors)
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
	posIDs := checkpoint.NewI64(make([]int64, 77), 1, 77)
	diffusers := map[string]*checkpoint.Tensor{"text_model.embeddings.position_ids": posIDs}
	whole := map[string]*checkpoint.Tensor{ // a whole SD v1 checkpoint: UNet, VAE, text encoder
		"model.diffusion_model.out.2.bias":                                checkpoint.NewF32(make([]float32, 4), 4),
		"first_stage_model.decoder.conv_out.bias":                         checkpoint.NewF32(make([]float32, 3), 3),
		"cond_stage_model.transformer.text_model.embeddings.position_ids": posIDs,
	}
	legacy := map[string]*checkpoint.Tensor{}
	half := map[string]*checkpoint.Tensor{"model.diffusion_model.out.2.bias": whole["model.diffusion_model.out.2.bias"]}
	for k, v := range hf {
		if rest, ok := strings.CutPrefix(k, "text_model."); ok {
			diffusers[k] = v
			whole[SDTextPrefix+k] = v
			legacy[SDTextPrefix+rest] = v
			half[SDTextPrefix+k] = &checkpoint.Tensor{DType: checkpoint.F16, Shape: v.Shape, Data: v.Data}
		}
	}
	hfFile := write("hf-clip.safetensors", hf)
	return map[string]string{
		"openai":    openai,
		"hf":        hfFile,
		"diffusers": write("model.safetensors", diffusers),
		"sd":        write("v1-5-tiny.safetensors", whole),
		"sd-legacy": write("v1-legacy.safetensors", legacy),
		"sd-f16":    write("v1-5-tiny-fp16.safetensors", half),
	}
}

// Every layout gives the text tower of the golden OpenAI weights, bit for bit.
func TestTextEncoderLayouts(t *testing.T) {
	_, path := goldenWeights(t)
	m := loadModel(t, path, goldenHeads)
	rows := goldenTokenizer(t).TokenizePad([]string{"a photo of a cat", "two dogs on a sofa"}, EOT)
	want, err := m.HiddenStates(rows)
	if err != nil {
		t.Fatal(err)
	}
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	layouts := map[string]TextLayout{"openai": TextOpenAI, "hf": TextHF, "diffusers": TextHF, "sd": TextSD, "sd-legacy": TextSD, "sd-f16": TextSD}
	for name, p := range textFiles(t) {
		e, err := LoadTextEncoder(b, p, TextConfig{Heads: 4})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if want := goldenConfig.Text(); e.TextConfig != want {
			t.Errorf("%s: config %s, want %s", name, e.TextConfig, want)
		}
		if e.Layout != layouts[name] || len(e.SHA256) != 64 {
			t.Errorf("%s: layout %s, sha256 %q; want %s and a digest", name, e.Layout, e.SHA256, layouts[name])
		}
		got, err := e.HiddenStates(rows)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "sd-f16" { // weights rounded to half precision: close, not equal
			if e := golden.RelToMax(got, want); e > 1e-2 || e == 0 {
				t.Errorf("%s: rel-to-max error %.3g against the F32 weights, want (0, 1e-2]", name, e)
			} else {
				t.Logf("%s: rel-to-max error %.3g against the F32 weights", name, e)
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: hidden states differ from the OpenAI-named model's by %g", name, golden.MaxAbs(got, want))
		}
	}
}

func TestTextEncoderErrors(t *testing.T) {
	sd, path := goldenWeights(t)
	hf, err := OpenAIToHF(sd.Tensors)
	if err != nil {
		t.Fatal(err)
	}
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
	one := checkpoint.NewF32([]float32{1}, 1)
	sdMissing := map[string]*checkpoint.Tensor{}
	for k, v := range hf {
		if strings.HasPrefix(k, "text_model.") && k != "text_model.encoder.layers.1.mlp.fc2.weight" {
			sdMissing[SDTextPrefix+k] = v
		}
	}
	nan := map[string]*checkpoint.Tensor{}
	for k, v := range sd.Tensors {
		nan[k] = v
	}
	nan["ln_final.weight"] = checkpoint.NewF32(append([]float32{float32(math.Inf(1))}, make([]float32, 63)...), 64)
	for _, c := range []struct {
		name, path string
		cfg        TextConfig
		want       string
	}{
		{"sd without text", write("unet-vae.safetensors", map[string]*checkpoint.Tensor{"model.diffusion_model.out.2.bias": one, "first_stage_model.decoder.conv_out.bias": one}),
			TextConfig{Heads: 4}, "no CLIP text encoder (cond_stage_model.transformer.*) in " + filepath.Join(dir, "unet-vae.safetensors") + ": the Stable Diffusion checkpoint holds only model.diffusion_model.* and first_stage_model.*"},
		{"sd2 openclip", write("sd2.safetensors", map[string]*checkpoint.Tensor{"cond_stage_model.model.token_embedding.weight": one, "model.diffusion_model.out.2.bias": one}),
			TextConfig{Heads: 4}, "no CLIP text encoder (cond_stage_model.transformer.*) in " + filepath.Join(dir, "sd2.safetensors")},
		{"unrelated", write("other.safetensors", map[string]*checkpoint.Tensor{"foo.weight": one}), TextConfig{Heads: 4}, `no CLIP text encoder in`},
		{"vision only", write("vision.safetensors", map[string]*checkpoint.Tensor{"visual.proj": one}), TextConfig{Heads: 4}, `"visual.proj"`},
		{"sd missing tensor", write("sd-missing.safetensors", sdMissing), TextConfig{Heads: 4}, `missing tensor "transformer.resblocks.1.mlp.c_proj.weight"`},
		{"no heads", path, TextConfig{}, "text heads must be given"},
		{"bad heads", path, TextConfig{Heads: 3}, "divide"},
		{"wrong width", path, TextConfig{Heads: 4, Width: 768}, "Width is 768"},
		{"non-finite", write("inf.safetensors", nan), TextConfig{Heads: 4}, `"ln_final.weight" holds a non-finite value`},
		{"not a file", filepath.Join(dir, "nope.ckpt"), TextConfig{Heads: 4}, "nope.ckpt"},
	} {
		_, err := LoadTextEncoder(b, c.path, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}

	e, err := LoadTextEncoder(b, path, TextConfig{Heads: 4})
	if err != nil {
		t.Fatal(err)
	}
	row := goldenTokenizer(t).TokenizePad([]string{"a cat"}, EOT)[0]
	if _, err := e.HiddenStates([][]int32{row[:76]}); err == nil || !strings.Contains(err.Error(), "exactly 77") {
		t.Errorf("76-id row: %v", err)
	}
	bad := slices.Clone(row)
	bad[3] = VocabSize
	if _, err := e.HiddenStates([][]int32{bad}); err == nil || !strings.Contains(err.Error(), "49408") {
		t.Errorf("out-of-range id: %v", err)
	}
	if _, err := e.HiddenStates(nil); err == nil {
		t.Error("no rows accepted")
	}
}
