package captions

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The tiny encoder's shape and seed; tools/fmnist_text.py holds the same values.
const (
	TinyWidth         = 32                 // features per token
	TinyMaxLen        = 12                 // tokens per caption, padded
	TinySeed   uint64 = 0x63617074696f6e73 // "captions" in ASCII
)

// TinyClasses are the Fashion-MNIST class names, by label.
var TinyClasses = [10]string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// TinyTemplates are the caption templates; "{}" stands for the class name.
var TinyTemplates = [4]string{"{}", "a photo of a {}", "a {} on a plain background", "a black and white photo of a {}"}

// tinyVocab is every word of TinyTemplates and TinyClasses, sorted; a test keeps it in step.
var tinyVocab = []string{
	"a", "and", "ankle", "background", "bag", "black", "boot", "coat", "dress", "of", "on",
	"photo", "plain", "pullover", "sandal", "shirt", "sneaker", "t", "top", "trouser", "white",
}

// TinyCaption is the caption of a Fashion-MNIST class (label 0–9) in one of TinyTemplates.
func TinyCaption(class, template int) (string, error) {
	if class < 0 || class >= len(TinyClasses) {
		return "", fmt.Errorf("captions: class %d, want a Fashion-MNIST label 0 to %d", class, len(TinyClasses)-1)
	}
	if template < 0 || template >= len(TinyTemplates) {
		return "", fmt.Errorf("captions: template %d, want 0 to %d", template, len(TinyTemplates)-1)
	}
	return strings.Replace(TinyTemplates[template], "{}", TinyClasses[class], 1), nil
}

// TinyEncoder is the fixed text encoder of the embedded Fashion-MNIST text-to-image model:
// each word and each position has a fixed pseudo-random vector, and token t of a caption is
//
//	float32(word[w_t] + 0.5·pos[t])   (sum in float64, one rounding to float32)
//
// Words are the maximal runs of ASCII letters, lower-cased; everything else separates them.
// Token rows past the last word are zero, and a caption of 0 or more than TinyMaxLen words,
// or with a word outside Vocab, is an error.
//
// The vector of a key (a word, or "@" and the decimal position for pos[t], "@0" … "@11") is:
//
//	state := FNV-1a-64(UTF-8 bytes of key) XOR TinySeed
//	x_k   := splitmix64(state) for k = 0 … 4·TinyWidth-1 (state += 0x9E3779B97F4A7C15;
//	         z = (z ^ z>>30)·0xBF58476D1CE4E5B9; z = (z ^ z>>27)·0x94D049BB133111EB; z ^ z>>31)
//	u_k   := float64(x_k >> 11) · 2⁻⁵³
//	v_j   := (((u_4j + u_4j+1) + u_4j+2) + u_4j+3 − 2) · sqrt(3)
//
// an Irwin–Hall(4) variate of mean 0 and variance 1. Box–Muller would need log and cos, whose
// last bit differs between libms (Go's, glibc's, numpy's SIMD ones); this recipe uses only
// correctly rounded IEEE operations, so tools/fmnist_text.py reproduces it bit for bit.
// Keying each vector by its word keeps existing vectors unchanged if words are added.
type TinyEncoder struct{}

// tinyTable holds the float64 vector of every word and position, built once.
var tinyTable = sync.OnceValue(func() map[string][]float64 {
	m := make(map[string][]float64, len(tinyVocab)+TinyMaxLen)
	for _, w := range tinyVocab {
		m[w] = tinyVector(w)
	}
	for t := range TinyMaxLen {
		m[posKey(t)] = tinyVector(posKey(t))
	}
	return m
})

func posKey(t int) string { return "@" + strconv.Itoa(t) }

// tinyVector draws the TinyWidth components of key's vector (the recipe on TinyEncoder).
func tinyVector(key string) []float64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 0x100000001b3
	}
	state := h ^ TinySeed
	next := func() float64 {
		state += 0x9E3779B97F4A7C15
		z := state
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		return float64(z>>11) * 0x1p-53
	}
	v := make([]float64, TinyWidth)
	for j := range v {
		s := next()
		s += next()
		s += next()
		s += next()
		v[j] = (s - 2) * math.Sqrt(3)
	}
	return v
}

// tinyWords splits a caption into lower-case ASCII-letter words.
func tinyWords(caption string) []string {
	return strings.FieldsFunc(strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		case r >= 'a' && r <= 'z':
			return r
		}
		return ' '
	}, caption), func(r rune) bool { return r == ' ' })
}

// Vocab returns the encoder's words, sorted.
func (TinyEncoder) Vocab() []string { return slices.Clone(tinyVocab) }

// Encode returns a caption's features [TinyMaxLen, TinyWidth] row-major, zero past its valid words, and its word count.
func (TinyEncoder) Encode(caption string) ([]float32, int, error) {
	out, n, err := tinyEncode(caption)
	if err != nil {
		return nil, 0, fmt.Errorf("captions: %w", err)
	}
	return out, n, nil
}

func tinyEncode(caption string) ([]float32, int, error) {
	words := tinyWords(caption)
	switch {
	case len(words) == 0:
		return nil, 0, fmt.Errorf("caption %q has no words, want 1 to %d (the model's null caption is its own, not an encoding)", clip(caption), TinyMaxLen)
	case len(words) > TinyMaxLen:
		return nil, 0, fmt.Errorf("caption %q has %d words, the tiny encoder takes at most %d", clip(caption), len(words), TinyMaxLen)
	}
	table := tinyTable()
	out := make([]float32, TinyMaxLen*TinyWidth)
	for t, w := range words {
		wv, ok := table[w]
		if !ok {
			return nil, 0, fmt.Errorf("caption %q: word %q is not in the tiny encoder's vocabulary (%s)", clip(caption), w, strings.Join(tinyVocab, " "))
		}
		pv := table[posKey(t)]
		row := out[t*TinyWidth : (t+1)*TinyWidth]
		for j := range row {
			// 0.5·p is exact, so a fused multiply-add would round the same as Python's two operations.
			row[j] = float32(wv[j] + 0.5*pv[j])
		}
	}
	return out, len(words), nil
}

// Features encodes captions (for example those of ReadPrompts) as Features of width TinyWidth and length TinyMaxLen.
func (TinyEncoder) Features(captions []string) (*Features, error) {
	tokens := make([][]float32, len(captions))
	for i, c := range captions {
		feat, n, err := tinyEncode(c)
		if err != nil {
			return nil, fmt.Errorf("captions: prompt %d: %w", i, err)
		}
		tokens[i] = feat[:n*TinyWidth]
	}
	return NewFeatures(TinyWidth, TinyMaxLen, tokens)
}
