package checkpoint

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// nativeLE reports whether the host stores numbers little-endian, as both
// file formats do; then typed slices can be filled straight from the file.
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes views a numeric slice as its bytes, so one ReadAt/Write moves a
// whole tensor without a second copy of a multi-GB checkpoint in memory.
func asBytes[T float32 | float64 | int64 | int32 | uint8](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(zero)))
}

// swapBytes reverses each size-byte word in place, converting between
// little-endian file order and a big-endian host (or a big-endian torch file).
func swapBytes(b []byte, size int) {
	if size <= 1 {
		return
	}
	for i := 0; i+size <= len(b); i += size {
		for l, r := i, i+size-1; l < r; l, r = l+1, r-1 {
			b[l], b[r] = b[r], b[l]
		}
	}
}

// decodeHalf upcasts little-endian F16 or BF16 words into dst (len(src) == 2*len(dst)).
func decodeHalf(dst []float32, src []byte, d DType) {
	for i := range dst {
		h := binary.LittleEndian.Uint16(src[2*i:])
		if d == BF16 {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		} else {
			dst[i] = float16.Frombits(h).Float32()
		}
	}
}

// encodeHalf rounds src to F16 or BF16 (nearest, ties to even) as little-endian words in dst.
func encodeHalf(dst []byte, src []float32, d DType) {
	for i, v := range src {
		var h uint16
		if d == BF16 {
			h = f32ToBF16(v)
		} else {
			h = float16.Fromfloat32(v).Bits()
		}
		binary.LittleEndian.PutUint16(dst[2*i:], h)
	}
}

// f32ToBF16 rounds to nearest even; NaNs are truncated (and kept quiet)
// because rounding could carry a NaN payload into the exponent and make it Inf.
func f32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
