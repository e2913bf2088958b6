// Package captions reads caption prompts and precomputed text-encoder features for
// text-conditioned models (PixArt-α's T5-XXL features), and provides TinyEncoder, the fixed
// word-level text encoder of the embedded Fashion-MNIST text-to-image model.
//
// It sits at data-set level: it imports nothing of this module but models/checkpoint.
package captions

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// Features are the text-encoder outputs of P captions, each padded to MaxLen tokens.
//
// Only the valid tokens are stored, since padding to T5's 120 tokens would multiply the
// memory of typical 10–30-token captions several times over; Padded and Mask expand a caption
// to the [MaxLen, Width] layout the model takes, with zero features and mask 0 past its end.
type Features struct {
	Width  int         // C: features per token (4096 for T5-XXL)
	MaxLen int         // L: the padded token count the features were stored with
	Tokens [][]float32 // per caption its valid tokens, row-major [Valid(i), Width]
	ID     string      // hex SHA-256 of P, C and every caption's valid tokens (not of L, nor of the file format)
	Source string      // the file or folder read; empty for features built in memory
}

// NewFeatures validates per-caption valid tokens (each [n_i, width] row-major, 1 ≤ n_i ≤ maxLen, finite) and computes their ID.
func NewFeatures(width, maxLen int, tokens [][]float32) (*Features, error) {
	if width < 1 || maxLen < 1 {
		return nil, fmt.Errorf("captions: features width %d and length %d, want both ≥ 1", width, maxLen)
	}
	if len(tokens) == 0 {
		return nil, errors.New("captions: no caption features, want at least one caption")
	}
	for i, t := range tokens {
		if len(t)%width != 0 {
			return nil, fmt.Errorf("captions: caption %d has %d feature values, not a multiple of the width %d", i, len(t), width)
		}
		n := len(t) / width
		switch {
		case n == 0:
			// Cross-attention over no key at all is a softmax over nothing: NaN images.
			return nil, fmt.Errorf("captions: caption %d has no valid token, want at least 1 (T5 always emits </s>)", i)
		case n > maxLen:
			return nil, fmt.Errorf("captions: caption %d has %d tokens, more than the length %d", i, n, maxLen)
		}
		// T5-XXL run in float16 is known to overflow; catch it here rather than as NaN images.
		for k, v := range t {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("captions: caption %d: token %d, channel %d is %v, want a finite feature", i, k/width, k%width, v)
			}
		}
	}
	f := &Features{Width: width, MaxLen: maxLen, Tokens: tokens}
	f.ID = f.contentID()
	return f, nil
}

// contentID hashes what the model sees of the features: the same captions give the same ID
// whichever file format or padding length they were stored with.
func (f *Features) contentID() string {
	h := sha256.New()
	var b [8]byte
	put := func(v int) {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	h.Write([]byte("cachebench/captions/v1\x00"))
	put(len(f.Tokens))
	put(f.Width)
	buf := make([]byte, 0, 4*4096)
	for _, t := range f.Tokens {
		put(len(t) / f.Width)
		for len(t) > 0 {
			n := min(len(t), cap(buf)/4)
			buf = buf[:0]
			for _, v := range t[:n] {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			h.Write(buf)
			t = t[n:]
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Len is the number of captions P.
func (f *Features) Len() int { return len(f.Tokens) }

// Valid is caption i's number of valid tokens.
func (f *Features) Valid(i int) int { return len(f.Tokens[i]) / f.Width }

// Padded returns caption i's features as a new [MaxLen, Width] row-major slice, zero past its valid tokens.
func (f *Features) Padded(i int) []float32 {
	out := make([]float32, f.MaxLen*f.Width)
	copy(out, f.Tokens[i])
	return out
}

// Mask returns caption i's attention mask as a new [MaxLen] slice: 1 for a valid token, 0 for padding.
func (f *Features) Mask(i int) []float32 {
	out := make([]float32, f.MaxLen)
	for k := range f.Valid(i) {
		out[k] = 1
	}
	return out
}

// WithMaxLen returns the same captions (sharing Tokens) padded to maxLen tokens, or an error naming a caption longer than maxLen.
func (f *Features) WithMaxLen(maxLen int) (*Features, error) {
	if maxLen < 1 {
		return nil, fmt.Errorf("captions: padded length %d, want ≥ 1", maxLen)
	}
	for i := range f.Tokens {
		if n := f.Valid(i); n > maxLen {
			return nil, fmt.Errorf("captions: %s: caption %d has %d tokens, more than the length %d", f.source(), i, n, maxLen)
		}
	}
	g := *f
	g.MaxLen = maxLen
	return &g, nil
}

func (f *Features) source() string {
	if f.Source == "" {
		return "caption features"
	}
	return f.Source
}

// Check reports, before any compute, prompts and features that disagree in count, features of the wrong width, or a caption longer than the model's maximum.
func Check(prompts []string, f *Features, modelWidth, modelMaxLen int) error {
	if f == nil {
		return errors.New("captions: no caption features given")
	}
	if len(prompts) != f.Len() {
		return fmt.Errorf("captions: %d prompts but %s holds features of %d captions; want one feature entry per prompt line, in the same order",
			len(prompts), f.source(), f.Len())
	}
	if f.Width != modelWidth {
		return fmt.Errorf("captions: %s: features are %d wide, the model wants %d per token", f.source(), f.Width, modelWidth)
	}
	for i := range f.Tokens {
		if n := f.Valid(i); n > modelMaxLen {
			return fmt.Errorf("captions: %s: prompt %d (%q) has %d tokens, the model takes at most %d",
				f.source(), i, clip(prompts[i]), n, modelMaxLen)
		}
	}
	return nil
}

// clip shortens a caption quoted in an error so a long prompt does not drown the message.
func clip(s string) string {
	const n = 60
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
