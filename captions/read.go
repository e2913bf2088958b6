package captions

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// Field names of a caption-feature file: PixArt-α's (tools/extract_features.py), and the
// names its models' forward takes (y, mask) as aliases.
const (
	FeatureField      = "caption_feature"
	MaskField         = "attention_mask"
	FeatureFieldAlias = "y"
	MaskFieldAlias    = "mask"
)

// IndexFile, in a folder of per-caption files, lists those files in prompt order, one name (relative to the folder) per line.
const IndexFile = "index.txt"

// Open reads caption features from a .safetensors or .npz file holding all captions, or from a folder of per-caption .npz (or .safetensors) files.
func Open(path string) (*Features, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("captions: caption features: %w", err)
	}
	if st.IsDir() {
		return openDir(path)
	}
	tokens, maxLen, width, err := readFile(path, 0, true)
	if err != nil {
		return nil, err
	}
	return newChecked(path, width, maxLen, tokens), nil
}

// newChecked wraps tokens that readFile already validated.
func newChecked(src string, width, maxLen int, tokens [][]float32) *Features {
	f := &Features{Width: width, MaxLen: maxLen, Tokens: tokens, Source: src}
	f.ID = f.contentID()
	return f
}

// openDir reads PixArt's layout: one file per caption, as tools/extract_features.py writes them.
func openDir(dir string) (*Features, error) {
	files, err := listDir(dir)
	if err != nil {
		return nil, err
	}
	tokens := make([][]float32, 0, len(files))
	maxLen, width := 0, 0
	for i, path := range files {
		// PixArt's loader treats a file without attention_mask as all tokens valid; so do we.
		t, l, c, err := readFile(path, i, false)
		if err != nil {
			return nil, err
		}
		if len(t) != 1 {
			return nil, fmt.Errorf("captions: %s (prompt %d): field %q holds %d captions, want 1 in a folder of per-caption files",
				path, i, FeatureField, len(t))
		}
		if i > 0 && c != width {
			return nil, fmt.Errorf("captions: %s (prompt %d): features are %d wide, want %d like %s",
				path, i, c, width, files[0])
		}
		width = c
		// Shorter files are padded, as PixArt's loader pads them to its max_length.
		maxLen = max(maxLen, l)
		tokens = append(tokens, t[0])
	}
	return newChecked(dir, width, maxLen, tokens), nil
}

// listDir returns the per-caption files of dir in prompt order: those IndexFile lists, or else
// every .npz/.safetensors file, each named by its decimal prompt index (00000.npz, 1.npz, …).
func listDir(dir string) ([]string, error) {
	index := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(index)
	switch {
	case err == nil:
		names, err := splitLines(index, b, "feature file name")
		if err != nil {
			return nil, err
		}
		for i, n := range names {
			if !filepath.IsAbs(n) {
				names[i] = filepath.Join(dir, n)
			}
		}
		return names, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("captions: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("captions: caption features: %w", err)
	}
	byIndex := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".npz" && ext != ".safetensors") {
			continue
		}
		stem := strings.TrimSuffix(name, filepath.Ext(name))
		i, err := strconv.Atoi(stem)
		if err != nil || strings.Trim(stem, "0123456789") != "" {
			return nil, fmt.Errorf("captions: %s: file %q is not named by a prompt index (00000.npz, 00001.npz, …); rename the files so, or list them in prompt order in %s",
				dir, name, IndexFile)
		}
		if prev, dup := byIndex[i]; dup {
			return nil, fmt.Errorf("captions: %s: files %q and %q both hold prompt %d, want one file per prompt", dir, prev, name, i)
		}
		byIndex[i] = name
	}
	if len(byIndex) == 0 {
		return nil, fmt.Errorf("captions: %s: no %s and no caption-feature files (00000.npz, …), want one file per prompt", dir, IndexFile)
	}
	files := make([]string, len(byIndex))
	for i := range files {
		name, ok := byIndex[i]
		if !ok {
			return nil, fmt.Errorf("captions: %s: %d feature files but none for prompt %d, want files numbered 0 to %d without gaps",
				dir, len(byIndex), i, len(byIndex)-1)
		}
		files[i] = filepath.Join(dir, name)
	}
	return files, nil
}

// readFile reads the captions of one file; base is the prompt index of its first caption, for errors.
func readFile(path string, base int, requireMask bool) (tokens [][]float32, maxLen, width int, err error) {
	var tensors map[string]*checkpoint.Tensor
	var names []string
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".safetensors":
		cf, err := checkpoint.ReadSafetensors(path)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("captions: %w", err)
		}
		tensors, names = cf.Tensors, cf.Names()
	case ".npz":
		tensors, names, err = readNpz(path, FeatureField, FeatureFieldAlias, MaskField, MaskFieldAlias)
		if err != nil {
			return nil, 0, 0, err
		}
	default:
		return nil, 0, 0, fmt.Errorf("captions: %s: file type %q is not a caption-feature file, want .safetensors, .npz or a folder of per-caption .npz files", path, ext)
	}
	feat, featKey, err := pick(path, tensors, names, FeatureField, FeatureFieldAlias, true)
	if err != nil {
		return nil, 0, 0, err
	}
	mask, maskKey, err := pick(path, tensors, names, MaskField, MaskFieldAlias, requireMask)
	if err != nil {
		return nil, 0, 0, err
	}
	return decodeSet(path, base, feat, featKey, mask, maskKey)
}

// pick returns the tensor stored under name or alias.
func pick(path string, tensors map[string]*checkpoint.Tensor, names []string, name, alias string, required bool) (*checkpoint.Tensor, string, error) {
	t, a := tensors[name], tensors[alias]
	switch {
	case t != nil && a != nil:
		return nil, "", fmt.Errorf("captions: %s: holds both field %q and its alias %q, want one of them", path, name, alias)
	case t != nil:
		return t, name, nil
	case a != nil:
		return a, alias, nil
	case required:
		return nil, "", fmt.Errorf("captions: %s: no field %q (nor its alias %q); the file holds %s", path, name, alias, fieldList(names))
	}
	return nil, "", nil
}

func fieldList(names []string) string {
	if len(names) == 0 {
		return "no arrays"
	}
	const most = 8
	if len(names) > most {
		return fmt.Sprintf("%q and %d more", names[:most], len(names)-most)
	}
	return fmt.Sprintf("%q", names)
}

// decodeSet validates features [P, L, C] (or [L, C]) and their mask [P, L] (or [L]; nil: all
// valid) and returns each caption's valid tokens.
func decodeSet(path string, base int, feat *checkpoint.Tensor, featKey string, mask *checkpoint.Tensor, maskKey string) (tokens [][]float32, maxLen, width int, err error) {
	fail := func(format string, args ...any) ([][]float32, int, int, error) {
		return nil, 0, 0, fmt.Errorf("captions: %s: "+format, append([]any{path}, args...)...)
	}
	var p, l, c int
	switch s := feat.Shape; len(s) {
	case 3:
		p, l, c = s[0], s[1], s[2]
	case 2:
		p, l, c = 1, s[0], s[1]
	default:
		return fail("field %q has shape %s, want [P, L, C] (or [L, C] for one caption)", featKey, checkpoint.Shape(feat.Shape))
	}
	if p < 1 || l < 1 || c < 1 {
		return fail("field %q has shape %s, want every dimension ≥ 1", featKey, checkpoint.Shape(feat.Shape))
	}
	switch feat.DType {
	case checkpoint.F32, checkpoint.F16, checkpoint.BF16, checkpoint.F64:
	default:
		return fail("field %q is %s, want float32 or float16", featKey, feat.DType)
	}
	vals, err := feat.Float32()
	if err != nil || len(vals) != p*l*c {
		return fail("field %q: data does not match shape %s", featKey, checkpoint.Shape(feat.Shape))
	}
	var m []float64
	if mask != nil {
		s := mask.Shape
		if !(len(s) == 2 && s[0] == p && s[1] == l) && !(p == 1 && len(s) == 1 && s[0] == l) {
			return fail("field %q has shape %s, want [%d, %d] to match field %q %s",
				maskKey, checkpoint.Shape(s), p, l, featKey, checkpoint.Shape(feat.Shape))
		}
		if m, err = mask.Float64(); err != nil || len(m) != p*l {
			return fail("field %q: data does not match shape %s", maskKey, checkpoint.Shape(s))
		}
	}
	tokens = make([][]float32, p)
	for i := range p {
		valid := l
		if m != nil {
			if valid, err = validPrefix(m[i*l:(i+1)*l], maskKey); err != nil {
				return fail("prompt %d: %v", base+i, err)
			}
		}
		// A copy, so that the padding of a large [P, L, C] array can be freed.
		t := slices.Clone(vals[i*l*c : (i*l+valid)*c])
		for k, v := range t {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fail("prompt %d: field %q: token %d, channel %d is %v, want finite features (T5 run in float16 overflows)",
					base+i, featKey, k/c, k%c, v)
			}
		}
		tokens[i] = t
	}
	return tokens, l, c, nil
}

// validPrefix counts the valid tokens of one mask row, which must be 1s then 0s.
func validPrefix(row []float64, key string) (int, error) {
	n, pad := 0, -1
	for k, v := range row {
		switch v {
		case 1:
			if pad >= 0 {
				return 0, fmt.Errorf("field %q is 1 at position %d after 0 at position %d, want the valid tokens first (right padding)", key, k, pad)
			}
			n++
		case 0:
			if pad < 0 {
				pad = k
			}
		default:
			return 0, fmt.Errorf("field %q is %v at position %d, want 1 (valid) or 0 (padding)", key, v, k)
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("field %q is all 0, want at least one valid token", key)
	}
	return n, nil
}
