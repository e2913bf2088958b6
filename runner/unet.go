package runner

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// DepthToSpace is the fixed decoder of a latent that is a lossless F×F space-to-depth of an
// image, as PyTorch's PixelShuffle(F) undoes it:
//
//	image[c, F·i + dy, F·j + dx] = latent[c·F² + F·dy + dx, i, j]
//
// The embedded Fashion-MNIST UNet (tools/train_unet.py) samples 4×16×16 latents of 1×32×32
// images with F = 2: latent[k, i, j] = image[0, 2i + k/2, 2j + k%2], k = 2·dy + dx.
type DepthToSpace struct {
	Factor   int // F
	Channels int // the latent's channels (a multiple of F²)
}

// DepthToSpacePrefix starts the decoder's ID; the factor follows ("depth-to-space-2").
const DepthToSpacePrefix = "depth-to-space-"

// ID names the decoder ([model] decoder, Config.VAE): "depth-to-space-F".
func (d DepthToSpace) ID() string { return fmt.Sprintf("%s%d", DepthToSpacePrefix, d.Factor) }

// ImageShape is the image of a [c, h, w] latent: [c/F², F·h, F·w].
func (d DepthToSpace) ImageShape(c, h, w int) (int, int, int, error) {
	f2 := d.Factor * d.Factor
	if d.Factor < 1 || c != d.Channels || c%f2 != 0 {
		return 0, 0, 0, fmt.Errorf("%s: a latent of %d channels is not the space-to-depth of an image (want %d, a multiple of %d)", d.ID(), c, d.Channels, f2)
	}
	return c / f2, h * d.Factor, w * d.Factor, nil
}

// Decode rearranges n square latents [n, Channels, S, S] into n images [n, Channels/F², F·S, F·S];
// the latent's values are the image's, so nothing is scaled or clamped.
func (d DepthToSpace) Decode(latent []float32, n int) ([]float32, error) {
	F := d.Factor
	if n <= 0 || F < 1 || d.Channels < F*F || d.Channels%(F*F) != 0 || len(latent)%(n*d.Channels) != 0 || !isSquare(len(latent)/(n*d.Channels)) {
		return nil, fmt.Errorf("%s: %d values are not %d square latents of %d channels", d.ID(), len(latent), n, d.Channels)
	}
	per := len(latent) / n
	h := int(math.Round(math.Sqrt(float64(per / d.Channels))))
	w, ic, ih, iw := h, d.Channels/(F*F), h*F, h*F
	out := make([]float32, len(latent))
	for b := range n {
		src, dst := latent[b*per:(b+1)*per], out[b*per:(b+1)*per]
		for k := range ic {
			for dy := range F {
				for dx := range F {
					ch := src[(k*F*F+F*dy+dx)*h*w:]
					for i := range h {
						row := dst[k*ih*iw+(F*i+dy)*iw:]
						for j := range w {
							row[F*j+dx] = ch[i*w+j]
						}
					}
				}
			}
		}
	}
	return out, nil
}

func isSquare(n int) bool {
	r := int(math.Round(math.Sqrt(float64(n))))
	return r > 0 && r*r == n
}

// DecoderByName is the fixed decoder an experiment names with [model] decoder, for latents of the
// given channels (nil when the name is not one).
func DecoderByName(name string, channels int) ImageDecoder {
	if name == (DepthToSpace{Factor: 2}).ID() {
		return DepthToSpace{Factor: 2, Channels: channels}
	}
	return nil
}

// CLIP's special tokens as `runbench encode-text` writes them (start of text, end of text; the
// rows are padded with end of text).
const (
	clipSOT = 49406
	clipEOT = 49407
)

// UNetContexts are the text contexts of a prompted Stable Diffusion UNet: every prompt's, and the
// null context of classifier-free guidance.
type UNetContexts struct {
	Cond   []float32 // [P, L, Width]
	Null   []float32 // [L, Width]
	P, L   int
	Width  int
	ID     string // content hash of Cond and Null (shapes and float32 bits)
	Source string
}

// ContextField is the tensor of a context file (`runbench encode-text`'s output), TokensField its
// optional token rows.
const (
	ContextField = "context"
	TokensField  = "tokens"
)

// ReadUNetContexts reads the text contexts of prompts prompts from a context file: `context`
// [P+1, L, width] (float32, or float16/bfloat16), rows 0…P−1 the prompts in prompt-file order and
// row P the null context, the text encoder's output for the empty prompt "" (Stable Diffusion's
// unconditional context). `runbench encode-text --prompts FILE` writes it when FILE is the prompt
// file with an empty last line. When the file holds `tokens` [P+1, L] (encode-text writes them),
// row P must be the empty prompt's: start of text, then end-of-text padding. width is the UNet's
// context_dim; every problem names the file, the field and what was expected.
func ReadUNetContexts(path string, prompts, width int) (*UNetContexts, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, fmt.Errorf("prompts.features: %w", err)
	}
	t, ok := f.Tensors[ContextField]
	if !ok || t == nil {
		return nil, fmt.Errorf("prompts.features: %s holds no %q tensor (want %s [P+1, L, %d], as runbench encode-text writes; it holds %s)",
			path, ContextField, ContextField, width, strings.Join(f.Names(), ", "))
	}
	want := fmt.Sprintf("[%d, L, %d] (%d prompts of prompts.file, then the empty prompt's null context)", prompts+1, width, prompts)
	switch {
	case len(t.Shape) != 3 || t.Shape[1] < 1:
		return nil, fmt.Errorf("prompts.features: %s: %s has shape %s, want %s", path, ContextField, checkpoint.Shape(t.Shape), want)
	case t.Shape[2] != width:
		return nil, fmt.Errorf("prompts.features: %s: %s is %d wide, and the UNet's cross-attention takes context_dim %d: want %s",
			path, ContextField, t.Shape[2], width, want)
	case t.Shape[0] == prompts:
		return nil, fmt.Errorf("prompts.features: %s: %s has %d rows for %d prompts: want %s; encode the prompt file with an empty last line",
			path, ContextField, t.Shape[0], prompts, want)
	case t.Shape[0] != prompts+1:
		return nil, fmt.Errorf("prompts.features: %s: %s has %d rows, prompts.file %d prompts: want %s", path, ContextField, t.Shape[0], prompts, want)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("prompts.features: %s: %s: %w", path, ContextField, err)
	}
	L := t.Shape[1]
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("prompts.features: %s: %s row %d holds a non-finite value", path, ContextField, i/(L*width))
		}
	}
	if tk, ok := f.Tensors[TokensField]; ok && tk != nil {
		ids, err := tk.Int64()
		if err != nil || len(tk.Shape) != 2 || tk.Shape[0] != prompts+1 || tk.Shape[1] != L {
			return nil, fmt.Errorf("prompts.features: %s: %s has shape %s, want [%d, %d] beside %s", path, TokensField, checkpoint.Shape(tk.Shape), prompts+1, L, ContextField)
		}
		null := ids[prompts*L:]
		for j, id := range null {
			if (j == 0 && id != clipSOT) || (j > 0 && id != clipEOT) {
				return nil, fmt.Errorf("prompts.features: %s: the last row (%d) must be the empty prompt's null context, and its tokens are not the empty prompt's (start of text, then end of text): encode the prompt file with an empty last line",
					path, prompts)
			}
		}
	}
	per := L * width
	h := sha256.New()
	var hdr [24]byte
	binary.LittleEndian.PutUint64(hdr[0:], uint64(prompts))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(L))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(width))
	h.Write(hdr[:])
	var b [4]byte
	for _, x := range v {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
		h.Write(b[:])
	}
	return &UNetContexts{Cond: v[:prompts*per], Null: v[prompts*per:], P: prompts, L: L, Width: width,
		ID: fmt.Sprintf("%x", h.Sum(nil)), Source: path}, nil
}
