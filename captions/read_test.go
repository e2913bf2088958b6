package captions

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// TestOpenFormatsAgree writes one caption set in every accepted layout; all must read back
// the same valid tokens and so the same ID.
func TestOpenFormatsAgree(t *testing.T) {
	fx := newFixture(5, 2, 1)
	dir := t.TempDir()
	f16 := checkpoint.NewF32(fx.feat, fx.p, fx.l, fx.c)
	f16.DType = checkpoint.F16
	boolMask := make([]bool, len(fx.mask))
	for i, m := range fx.mask {
		boolMask[i] = m == 1
	}
	maskF32 := make([]float32, len(fx.mask))
	for i, m := range fx.mask {
		maskF32[i] = float32(m)
	}
	shape := []int{fx.p, fx.l, fx.c}
	mshape := []int{fx.p, fx.l}

	paths := map[string]string{
		"safetensors f32/i64": fx.writeSafetensors(t, filepath.Join(dir, "set.safetensors"), nil),
		"safetensors f16/bool": fx.writeSafetensors(t, filepath.Join(dir, "f16.safetensors"), map[string]*checkpoint.Tensor{
			FeatureField: f16, MaskField: checkpoint.NewBool(boolMask, fx.p, fx.l)}),
		"safetensors aliases y/mask": fx.writeSafetensors(t, filepath.Join(dir, "alias.safetensors"), map[string]*checkpoint.Tensor{
			FeatureFieldAlias: checkpoint.NewF32(fx.feat, fx.p, fx.l, fx.c), MaskFieldAlias: checkpoint.NewF32(maskF32, fx.p, fx.l),
			"unrelated": checkpoint.NewI64([]int64{1}, 1)}),
		"npz f4/i8": writeNpz(t, filepath.Join(dir, "set.npz"), false,
			npyArr{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(fx.feat)},
			npyArr{name: MaskField, descr: "<i8", shape: mshape, data: i64Bytes(fx.mask)}),
		"npz compressed f2/b1": writeNpz(t, filepath.Join(dir, "compressed.NPZ"), true,
			npyArr{name: MaskField, descr: "|b1", shape: mshape, data: boolBytes(fx.mask)},
			npyArr{name: FeatureField, descr: "<f2", shape: shape, data: f16Bytes(fx.feat)}),
		"npz aliases i4": writeNpz(t, filepath.Join(dir, "alias.npz"), false,
			npyArr{name: FeatureFieldAlias, descr: "<f4", shape: shape, data: f32Bytes(fx.feat)},
			npyArr{name: MaskFieldAlias, descr: "<i4", shape: mshape, data: i32Bytes(fx.mask)}),
	}

	// PixArt's layout: one file per caption, [1, L, C] and [1, L].
	numbered := filepath.Join(dir, "numbered")
	for i := range fx.p {
		feat, mask := fx.one(i)
		writeNpz(t, filepath.Join(numbered, fmt.Sprintf("%05d.npz", i)), true,
			npyArr{name: FeatureField, descr: "<f4", shape: []int{1, fx.l, fx.c}, data: f32Bytes(feat)},
			npyArr{name: MaskField, descr: "<i8", shape: []int{1, fx.l}, data: i64Bytes(mask)})
	}
	writeBytes(t, filepath.Join(numbered, "README.txt"), []byte("files other than .npz are ignored"))
	paths["folder 00000.npz…"] = numbered

	// PixArt's own file names (image folder_image name), ordered by index.txt; [L, C] and [L] too.
	indexed := filepath.Join(dir, "indexed")
	names := []string{"part1_img9.npz", "part0_img3.npz", "sub/part0_img1.safetensors"}
	for i, name := range names {
		feat, mask := fx.one(i)
		path := filepath.Join(indexed, name)
		if strings.HasSuffix(name, ".safetensors") {
			os.MkdirAll(filepath.Dir(path), 0o755)
			fx.writeSafetensors(t, path, map[string]*checkpoint.Tensor{
				FeatureField: checkpoint.NewF32(feat, fx.l, fx.c), MaskField: checkpoint.NewI64(mask, fx.l)})
			continue
		}
		writeNpz(t, path, false,
			npyArr{name: FeatureField, descr: "<f4", shape: []int{fx.l, fx.c}, data: f32Bytes(feat)},
			npyArr{name: MaskField, descr: "<i8", shape: []int{fx.l}, data: i64Bytes(mask)})
	}
	writeNpz(t, filepath.Join(indexed, "unlisted.npz"), false) // not in index.txt: ignored, however broken
	writeBytes(t, filepath.Join(indexed, IndexFile), []byte(strings.Join(names, "\r\n")+"\r\n"))
	paths["folder with index.txt"] = indexed

	want := fx.tokens()
	var id string
	for name, path := range paths {
		f, err := Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameTokens(t, f, want)
		if f.Width != fx.c || f.MaxLen != fx.l || f.Source != path {
			t.Fatalf("%s: width %d, length %d, source %q; want %d, %d, %q", name, f.Width, f.MaxLen, f.Source, fx.c, fx.l, path)
		}
		if id == "" {
			id = f.ID
		}
		if f.ID != id || len(f.ID) != 64 {
			t.Fatalf("%s: ID %q, want %q like the other layouts", name, f.ID, id)
		}
	}

	// The padded view has zeros, not the file's padding values, past each caption's tokens.
	f, _ := Open(paths["npz f4/i8"])
	for i := range fx.p {
		p, m := f.Padded(i), f.Mask(i)
		if len(p) != fx.l*fx.c || len(m) != fx.l {
			t.Fatalf("caption %d: padded %d values and mask %d, want %d and %d", i, len(p), len(m), fx.l*fx.c, fx.l)
		}
		for k, v := range p {
			tok := k / fx.c
			want := fx.feat[i*fx.l*fx.c+k]
			if tok >= fx.valid[i] {
				want = 0
			}
			if v != want {
				t.Fatalf("caption %d padded[%d] = %v, want %v", i, k, v, want)
			}
		}
		for k, v := range m {
			if want := float32(fx.mask[i*fx.l+k]); v != want {
				t.Fatalf("caption %d mask[%d] = %v, want %v", i, k, v, want)
			}
		}
	}

	// The ID depends on content only: other values give another ID.
	fx.feat[0] += 1
	other, err := Open(fx.writeSafetensors(t, filepath.Join(dir, "other.safetensors"), nil))
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == id {
		t.Fatalf("changing a feature value kept the ID %s", id)
	}
}

// TestOpenFolderPadding covers PixArt's variants: a file without attention_mask (all tokens
// valid, as PixArt's loader assumes) and files of different lengths (padded to the longest).
func TestOpenFolderPadding(t *testing.T) {
	dir := t.TempDir()
	writeNpz(t, filepath.Join(dir, "0.npz"), false,
		npyArr{name: FeatureField, descr: "<f4", shape: []int{1, 2, 3}, data: f32Bytes([]float32{1, 2, 3, 4, 5, 6})})
	writeNpz(t, filepath.Join(dir, "1.npz"), false,
		npyArr{name: FeatureField, descr: "<f8", shape: []int{1, 4, 3}, data: f64Bytes([]float64{1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9})},
		npyArr{name: MaskField, descr: "<f4", shape: []int{1, 4}, data: f32Bytes([]float32{1, 0, 0, 0})})
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameTokens(t, f, [][]float32{{1, 2, 3, 4, 5, 6}, {1, 1, 1}})
	if f.MaxLen != 4 || f.Width != 3 {
		t.Fatalf("length %d width %d, want 4 and 3", f.MaxLen, f.Width)
	}
}

func f64Bytes(v []float64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func TestOpenErrors(t *testing.T) {
	fx := newFixture(5, 2, 1)
	shape, mshape := []int{fx.p, fx.l, fx.c}, []int{fx.p, fx.l}
	feat := npyArr{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(fx.feat)}
	mask := func(m ...int64) npyArr {
		return npyArr{name: MaskField, descr: "<i8", shape: mshape, data: i64Bytes(m)}
	}
	okMask := mask(fx.mask...)
	nan := append([]float32(nil), fx.feat...)
	nan[(2*fx.l+0)*fx.c+3] = float32(math.Inf(1))
	nanPad := append([]float32(nil), fx.feat...)
	nanPad[(1*fx.l+3)*fx.c] = float32(math.NaN()) // padding: ignored

	for name, tc := range map[string]struct {
		arrays []npyArr
		want   []string
	}{
		"mask not a prefix": {[]npyArr{feat, mask(1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0)},
			[]string{"prompt 1", `"attention_mask" is 1 at position 2 after 0 at position 1`, "right padding"}},
		"mask value 2": {[]npyArr{feat, mask(1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 2, 0, 0, 0, 0)},
			[]string{"prompt 2", "is 2 at position 0", "want 1 (valid) or 0 (padding)"}},
		"mask all zero": {[]npyArr{feat, mask(1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0)},
			[]string{"prompt 1", "all 0, want at least one valid token"}},
		"mask shape": {[]npyArr{feat, {name: MaskField, descr: "<i8", shape: []int{fx.p, fx.l - 1}, data: i64Bytes(fx.mask[:fx.p*(fx.l-1)])}},
			[]string{`field "attention_mask" has shape [3, 4], want [3, 5] to match field "caption_feature" [3, 5, 4]`}},
		"mask float mask": {[]npyArr{feat, {name: MaskField, descr: "<f4", shape: mshape, data: f32Bytes(make([]float32, fx.p*fx.l))}},
			[]string{"prompt 0", "all 0"}},
		"no mask": {[]npyArr{feat},
			[]string{`no field "attention_mask" (nor its alias "mask")`, `["caption_feature"]`}},
		"no features": {[]npyArr{okMask, {name: "prompt_embeds", descr: "<f4", shape: []int{1}, data: f32Bytes([]float32{1})}},
			[]string{`no field "caption_feature" (nor its alias "y")`, `"attention_mask"`, `"prompt_embeds"`}},
		"both names": {[]npyArr{feat, okMask, {name: "y", descr: "<f4", shape: shape, data: f32Bytes(fx.feat)}},
			[]string{`both field "caption_feature" and its alias "y"`}},
		"int features": {[]npyArr{{name: FeatureField, descr: "<i4", shape: shape, data: i32Bytes(make([]int64, len(fx.feat)))}, okMask},
			[]string{`field "caption_feature" is I32, want float32 or float16`}},
		"rank 1 features": {[]npyArr{{name: FeatureField, descr: "<f4", shape: []int{len(fx.feat)}, data: f32Bytes(fx.feat)}, okMask},
			[]string{`field "caption_feature" has shape [60], want [P, L, C]`}},
		"empty set": {[]npyArr{{name: FeatureField, descr: "<f4", shape: []int{0, 5, 4}}, {name: MaskField, descr: "<i8", shape: []int{0, 5}}},
			[]string{"shape [0, 5, 4], want every dimension ≥ 1"}},
		"non-finite": {[]npyArr{{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(nan)}, okMask},
			[]string{"prompt 2", "token 0, channel 3 is +Inf, want finite"}},
		"fortran": {[]npyArr{{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(fx.feat), fortran: true}, okMask},
			[]string{`field "caption_feature"`, "Fortran order"}},
		"complex": {[]npyArr{{name: FeatureField, descr: "<c8", shape: shape, data: make([]byte, 8*len(fx.feat))}, okMask},
			[]string{`field "caption_feature"`, `dtype "<c8" is not supported`}},
		"truncated": {[]npyArr{{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(fx.feat[1:])}, okMask},
			[]string{`field "caption_feature"`, "holds 236 data bytes, want 240"}},
	} {
		path := writeNpz(t, filepath.Join(t.TempDir(), "set.npz"), false, tc.arrays...)
		_, err := Open(path)
		t.Run(name, func(t *testing.T) { wantErr(t, err, append([]string{path}, tc.want...)...) })
	}

	// Padding may hold anything T5 put there.
	if _, err := Open(writeNpz(t, filepath.Join(t.TempDir(), "set.npz"), false,
		npyArr{name: FeatureField, descr: "<f4", shape: shape, data: f32Bytes(nanPad)}, okMask)); err != nil {
		t.Fatalf("NaN in padding: %v", err)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "features.pt")
	writeBytes(t, bad, []byte("x"))
	_, err := Open(bad)
	wantErr(t, err, bad, `file type ".pt"`, "want .safetensors, .npz or a folder")

	notZip := filepath.Join(dir, "broken.npz")
	writeBytes(t, notZip, []byte("not a zip archive"))
	_, err = Open(notZip)
	wantErr(t, err, notZip, "not a readable .npz")

	brokenST := filepath.Join(dir, "broken.safetensors")
	writeBytes(t, brokenST, []byte("\x02\x00\x00\x00\x00\x00\x00\x00{"))
	_, err = Open(brokenST)
	wantErr(t, err, "captions: checkpoint: ", brokenST)

	_, err = Open(filepath.Join(dir, "missing.safetensors"))
	wantErr(t, err, "missing.safetensors", "no such file")

	// A safetensors set is checked the same way as an .npz one.
	m := append([]int64(nil), fx.mask...)
	m[2*fx.l+1] = 1
	m[2*fx.l+0] = 0
	st := fx.writeSafetensors(t, filepath.Join(dir, "set.safetensors"), map[string]*checkpoint.Tensor{
		FeatureField: checkpoint.NewF32(fx.feat, fx.p, fx.l, fx.c), MaskField: checkpoint.NewI64(m, fx.p, fx.l)})
	_, err = Open(st)
	wantErr(t, err, st, "prompt 2", "is 1 at position 1 after 0 at position 0")
}

func TestOpenFolderErrors(t *testing.T) {
	fx := newFixture(2, 3, 1)
	caption := func(i int) []npyArr {
		feat, mask := fx.one(i)
		return []npyArr{
			{name: FeatureField, descr: "<f4", shape: []int{1, fx.l, fx.c}, data: f32Bytes(feat)},
			{name: MaskField, descr: "<i8", shape: []int{1, fx.l}, data: i64Bytes(mask)},
		}
	}
	folder := func(files map[string][]npyArr, index string) string {
		dir := t.TempDir()
		for name, arrays := range files {
			writeNpz(t, filepath.Join(dir, name), false, arrays...)
		}
		if index != "" {
			writeBytes(t, filepath.Join(dir, IndexFile), []byte(index))
		}
		return dir
	}
	badMask := caption(2)
	badMask[1].data = i64Bytes([]int64{0, 1, 0, 0, 0})
	wide := []npyArr{{name: FeatureField, descr: "<f4", shape: []int{1, 1, 5}, data: f32Bytes(make([]float32, 5))}}
	two := []npyArr{{name: FeatureField, descr: "<f4", shape: []int{2, 1, 4}, data: f32Bytes(make([]float32, 8))}}

	for name, tc := range map[string]struct {
		files map[string][]npyArr
		index string
		want  []string
	}{
		"not numbered":  {map[string][]npyArr{"0.npz": caption(0), "cat_img1.npz": caption(1)}, "", []string{`file "cat_img1.npz" is not named by a prompt index`, IndexFile}},
		"signed name":   {map[string][]npyArr{"0.npz": caption(0), "+1.npz": caption(1)}, "", []string{`file "+1.npz" is not named by a prompt index`}},
		"gap":           {map[string][]npyArr{"00000.npz": caption(0), "00002.npz": caption(1)}, "", []string{"2 feature files but none for prompt 1", "numbered 0 to 1 without gaps"}},
		"duplicate":     {map[string][]npyArr{"1.npz": caption(0), "001.npz": caption(1)}, "", []string{`"001.npz" and "1.npz" both hold prompt 1`}},
		"empty":         {map[string][]npyArr{}, "", []string{"no index.txt and no caption-feature files"}},
		"bad mask":      {map[string][]npyArr{"0.npz": caption(0), "1.npz": caption(1), "2.npz": badMask}, "", []string{"2.npz: prompt 2", "is 1 at position 1 after 0 at position 0"}},
		"two captions":  {map[string][]npyArr{"0.npz": two}, "", []string{"0.npz (prompt 0)", "holds 2 captions, want 1"}},
		"width":         {map[string][]npyArr{"0.npz": caption(0), "1.npz": wide}, "", []string{"1.npz (prompt 1): features are 5 wide, want 4 like", "0.npz"}},
		"index blank":   {map[string][]npyArr{"a.npz": caption(0)}, "a.npz\n\na.npz\n", []string{IndexFile, "line 2 is blank"}},
		"index missing": {map[string][]npyArr{"a.npz": caption(0)}, "a.npz\nb.npz\n", []string{"b.npz", "no such file"}},
		"index no type": {map[string][]npyArr{"a.npz": caption(0)}, "a\n", []string{`file type ""`}},
	} {
		dir := folder(tc.files, tc.index)
		_, err := Open(dir)
		t.Run(name, func(t *testing.T) { wantErr(t, err, append([]string{dir}, tc.want...)...) })
	}
}

func TestCheck(t *testing.T) {
	f, err := NewFeatures(4, 6, [][]float32{make([]float32, 8), make([]float32, 24)})
	if err != nil {
		t.Fatal(err)
	}
	prompts := []string{"a cat", "a very long caption " + strings.Repeat("x", 100)}
	if err := Check(prompts, f, 4, 6); err != nil {
		t.Fatal(err)
	}
	wantErr(t, Check(prompts[:1], f, 4, 6), "1 prompts but caption features holds features of 2 captions")
	wantErr(t, Check(prompts, f, 4096, 120), "features are 4 wide, the model wants 4096")
	err = Check(prompts, f, 4, 5)
	wantErr(t, err, "prompt 1", "has 6 tokens, the model takes at most 5", "a very long caption xxx")
	if len(err.Error()) > 200 {
		t.Fatalf("error quotes the whole caption: %v", err)
	}
	wantErr(t, Check(prompts, nil, 4, 6), "no caption features")

	f.Source = "feats.npz"
	wantErr(t, Check(prompts, f, 8, 6), "feats.npz: features are 4 wide")
}

func TestNewFeaturesAndWithMaxLen(t *testing.T) {
	for name, tc := range map[string]struct {
		width, maxLen int
		tokens        [][]float32
		want          string
	}{
		"width 0":      {0, 4, [][]float32{{1}}, "width 0 and length 4, want both ≥ 1"},
		"no captions":  {2, 4, nil, "no caption features"},
		"ragged":       {2, 4, [][]float32{{1, 2, 3}}, "caption 0 has 3 feature values, not a multiple of the width 2"},
		"no token":     {2, 4, [][]float32{{1, 2}, {}}, "caption 1 has no valid token"},
		"too long":     {1, 2, [][]float32{{1, 2, 3}}, "caption 0 has 3 tokens, more than the length 2"},
		"not finite":   {2, 4, [][]float32{{1, 2, 3, float32(math.NaN())}}, "caption 0: token 1, channel 1 is NaN"},
		"fine, padded": {2, 4, [][]float32{{1, 2, 3, 4}}, ""},
	} {
		f, err := NewFeatures(tc.width, tc.maxLen, tc.tokens)
		if tc.want == "" {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			continue
		}
		t.Run(name, func(t *testing.T) {
			if f != nil {
				t.Fatalf("features returned with an error")
			}
			wantErr(t, err, tc.want)
		})
	}

	f, _ := NewFeatures(2, 4, [][]float32{{1, 2, 3, 4}, {5, 6}})
	g, err := f.WithMaxLen(2)
	if err != nil {
		t.Fatal(err)
	}
	if g.MaxLen != 2 || f.MaxLen != 4 || g.ID != f.ID || len(g.Padded(1)) != 4 || g.Mask(1)[1] != 0 {
		t.Fatalf("WithMaxLen(2): length %d (original %d), ID %s vs %s, padded %v mask %v", g.MaxLen, f.MaxLen, g.ID, f.ID, g.Padded(1), g.Mask(1))
	}
	_, err = f.WithMaxLen(1)
	wantErr(t, err, "caption 0 has 2 tokens, more than the length 1")
}

// TestNpyMalformed feeds readNpz broken .npy entries; each must be an error naming the field.
func TestNpyMalformed(t *testing.T) {
	good := npyBytes(npyArr{descr: "<f4", shape: []int{1, 2}, data: f32Bytes([]float32{1, 2})})
	v2 := append([]byte("\x93NUMPY\x02\x00"), binary.LittleEndian.AppendUint32(nil, uint32(len(good)-10-8))...)
	v2 = append(v2, good[10:]...)
	v3 := slices.Clone(v2)
	v3[6] = 3
	for name, tc := range map[string]struct {
		entry []byte
		want  string
	}{
		"bad magic":       {append([]byte("\x93NUMPX"), good[6:]...), "no \\x93NUMPY magic"},
		"version 4":       {append(slices.Clone(good[:6]), append([]byte{4, 0}, good[8:]...)...), "unsupported .npy format version 4.0"},
		"short header":    {good[:8], "truncated .npy header"},
		"cut header":      {good[:30], "truncated .npy header"},
		"huge header":     {append(append([]byte("\x93NUMPY\x02\x00"), 0, 0, 0, 0x40), good[10:]...), "want at most 1048576"},
		"no dict":         {append(append(slices.Clone(good[:8]), 4, 0), []byte("abc\n")...), "malformed .npy header"},
		"bad fortran":     {[]byte(strings.Replace(string(good), "'fortran_order': False", "'fortran_order': Maybe", 1)), "malformed .npy header"},
		"bad shape":       {[]byte(strings.Replace(string(good), "(1, 2)", "(1, x)", 1)), "malformed .npy header"},
		"negative shape":  {npyBytes(npyArr{descr: "<f4", shape: []int{-1, 2}}), "bad shape [-1 2]"},
		"long data":       {append(slices.Clone(good), 0, 0, 0, 0), "holds more than 8 data bytes"},
		"short data":      {good[:len(good)-1], "holds 7 data bytes, want 8 for dtype <f4 and shape [1 2]"},
		"bad byte order":  {[]byte(strings.Replace(string(good), "'<f4'", "'!f4'", 1)), `dtype "!f4" is not supported`},
		"two-digit size":  {npyBytes(npyArr{descr: "<f16", shape: []int{1, 2}}), `dtype "<f16" is not supported`},
		"version 2 works": {v2, ""},
		"version 3 works": {v3, ""},
	} {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.Create("y.npy")
		w.Write(tc.entry)
		zw.Close()
		path := filepath.Join(t.TempDir(), "x.npz")
		writeBytes(t, path, b.Bytes())
		got, _, err := readNpz(path, "y")
		t.Run(name, func(t *testing.T) {
			if tc.want == "" {
				if err != nil || !slices.Equal(got["y"].Data.([]float32), []float32{1, 2}) {
					t.Fatalf("got %v, %v; want [1 2]", got["y"], err)
				}
				return
			}
			wantErr(t, err, path, `field "y"`, tc.want)
		})
	}
}

// TestNpyDTypes reads every integer dtype an attention mask may come in.
func TestNpyDTypes(t *testing.T) {
	for descr, data := range map[string][]byte{
		"|i1": {1, 0}, "|u1": {1, 0}, "<i2": {1, 0, 0, 0}, "<u2": {1, 0, 0, 0}, ">i2": {0, 1, 0, 0},
		"<u4": {1, 0, 0, 0, 0, 0, 0, 0}, ">f8": {0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		path := writeNpz(t, filepath.Join(t.TempDir(), "m.npz"), false, npyArr{name: "m", descr: descr, shape: []int{2}, data: data})
		m, _, err := readNpz(path, "m")
		if err != nil {
			t.Fatalf("%s: %v", descr, err)
		}
		got, err := m["m"].Float64()
		if err != nil || !slices.Equal(got, []float64{1, 0}) {
			t.Fatalf("%s: %v %v, want [1 0]", descr, got, err)
		}
	}
}
