package captions

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/sbinet/npyio/npy"
	"github.com/x448/float16"
)

// maxNpyHeader bounds the header length a corrupt entry can make us allocate.
const maxNpyHeader = 1 << 20

// npzDTypes lists the element types readNpz converts, for error messages.
const npzDTypes = "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 b1"

// readNpz reads the arrays named in keys that the .npz archive at path holds (np.savez or
// np.savez_compressed), plus the list of all its array names. An absent key is not an error.
func readNpz(path string, keys ...string) (map[string]*checkpoint.Tensor, []string, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, nil, fmt.Errorf("captions: %s: not a readable .npz (zip) archive: %w", path, err)
	}
	defer zr.Close()
	out := map[string]*checkpoint.Tensor{}
	var names []string
	for _, f := range zr.File {
		key, ok := strings.CutSuffix(f.Name, ".npy")
		if !ok {
			continue
		}
		names = append(names, key)
		if !slices.Contains(keys, key) {
			continue
		}
		if _, dup := out[key]; dup {
			return nil, nil, fmt.Errorf("captions: %s: field %q: the archive holds it twice", path, key)
		}
		t, err := readNpyEntry(f)
		if err != nil {
			return nil, nil, fmt.Errorf("captions: %s: field %q: %w", path, key, err)
		}
		out[key] = t
	}
	return out, names, nil
}

// readNpyEntry decodes one C-ordered .npy array of a numeric or bool dtype.
func readNpyEntry(f *zip.File) (*checkpoint.Tensor, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("cannot open the entry: %w", err)
	}
	defer rc.Close()
	hdr, err := readNpyHeader(rc)
	if err != nil {
		return nil, err
	}
	d := hdr.Descr
	if d.Fortran && len(d.Shape) > 1 {
		return nil, fmt.Errorf("stored in Fortran order, want C order (save np.ascontiguousarray(x))")
	}
	kind, size, order, err := parseDescr(d.Type)
	if err != nil {
		return nil, err
	}
	n := 1
	for _, s := range d.Shape {
		if s < 0 || (s > 0 && n > math.MaxInt/size/s) {
			return nil, fmt.Errorf("bad shape %v", d.Shape)
		}
		n *= s
	}
	// ReadAll grows with the data that actually arrives, so a forged size cannot force a huge allocation.
	raw, err := io.ReadAll(io.LimitReader(rc, int64(n*size)+1))
	if err != nil {
		return nil, fmt.Errorf("corrupt entry: %w", err)
	}
	switch {
	case len(raw) > n*size:
		return nil, fmt.Errorf("holds more than %d data bytes, the size of dtype %s and shape %v", n*size, d.Type, d.Shape)
	case len(raw) < n*size:
		return nil, fmt.Errorf("holds %d data bytes, want %d for dtype %s and shape %v (truncated?)", len(raw), n*size, d.Type, d.Shape)
	}
	// Reading to EOF makes archive/zip verify the entry's CRC.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, fmt.Errorf("corrupt entry: %w", err)
	}
	return decodeNpy(raw, kind, size, order, slices.Clone(d.Shape)), nil
}

// readNpyHeader parses an .npy header (checking its length before npyio allocates it, and
// turning npyio's panics on malformed headers into errors) and leaves r at the data.
func readNpyHeader(r io.Reader) (hdr npy.Header, err error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:10]); err != nil {
		return hdr, fmt.Errorf("truncated .npy header")
	}
	if !bytes.Equal(pre[:6], npy.Magic[:]) {
		return hdr, fmt.Errorf("not an .npy array (no \\x93NUMPY magic)")
	}
	var hlen, plen int
	switch pre[6] {
	case 1:
		hlen, plen = int(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2, 3:
		if _, err := io.ReadFull(r, pre[10:12]); err != nil {
			return hdr, fmt.Errorf("truncated .npy header")
		}
		hlen, plen = int(binary.LittleEndian.Uint32(pre[8:12])), 12
		// Version 3 differs from 2 only in allowing UTF-8 field names, which npyio does not parse.
		pre[6] = 2
	default:
		return hdr, fmt.Errorf("unsupported .npy format version %d.%d, want 1, 2 or 3", pre[6], pre[7])
	}
	if hlen > maxNpyHeader {
		return hdr, fmt.Errorf(".npy header claims %d bytes, want at most %d", hlen, maxNpyHeader)
	}
	body := make([]byte, hlen)
	if _, err := io.ReadFull(r, body); err != nil {
		return hdr, fmt.Errorf("truncated .npy header")
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed .npy header %q", body)
		}
	}()
	nr, err := npy.NewReader(io.MultiReader(bytes.NewReader(pre[:plen]), bytes.NewReader(body)))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return hdr, fmt.Errorf("truncated .npy header")
		}
		return hdr, fmt.Errorf("malformed .npy header %q: %v", body, err)
	}
	return nr.Header, nil
}

// parseDescr splits a numpy dtype string such as "<f4" or "|b1".
func parseDescr(descr string) (kind byte, size int, order binary.ByteOrder, err error) {
	bad := fmt.Errorf("dtype %q is not supported, want one of %s", descr, npzDTypes)
	if len(descr) != 3 {
		return 0, 0, nil, bad
	}
	switch descr[0] {
	case '<', '|', '=':
		// '=' is native order; every platform this runs on is little-endian.
		order = binary.LittleEndian
	case '>':
		order = binary.BigEndian
	default:
		return 0, 0, nil, bad
	}
	kind, size = descr[1], int(descr[2]-'0')
	if !slices.Contains(strings.Fields(npzDTypes), descr[1:]) {
		return 0, 0, nil, bad
	}
	return kind, size, order, nil
}

// decodeNpy converts raw array data to a checkpoint tensor; half floats become F16 with
// float32 data, as checkpoint holds them, and narrow integers widen to I32.
func decodeNpy(raw []byte, kind byte, size int, order binary.ByteOrder, shape []int) *checkpoint.Tensor {
	n := len(raw) / size
	switch {
	case kind == 'b':
		data := make([]bool, n)
		for i, b := range raw {
			data[i] = b != 0
		}
		return checkpoint.NewBool(data, shape...)
	case kind == 'f' && size == 2:
		data := make([]float32, n)
		for i := range data {
			data[i] = float16.Frombits(order.Uint16(raw[2*i:])).Float32()
		}
		t := checkpoint.NewF32(data, shape...)
		t.DType = checkpoint.F16
		return t
	case kind == 'f' && size == 4:
		data := make([]float32, n)
		for i := range data {
			data[i] = math.Float32frombits(order.Uint32(raw[4*i:]))
		}
		return checkpoint.NewF32(data, shape...)
	case kind == 'f':
		data := make([]float64, n)
		for i := range data {
			data[i] = math.Float64frombits(order.Uint64(raw[8*i:]))
		}
		return checkpoint.NewF64(data, shape...)
	case kind == 'u' && size == 1:
		return checkpoint.NewU8(slices.Clone(raw), shape...)
	case size == 8 || (kind == 'u' && size == 4):
		data := make([]int64, n)
		for i := range data {
			if size == 8 {
				data[i] = int64(order.Uint64(raw[8*i:]))
			} else {
				data[i] = int64(order.Uint32(raw[4*i:]))
			}
		}
		return checkpoint.NewI64(data, shape...)
	}
	data := make([]int32, n)
	for i := range data {
		switch {
		case size == 4:
			data[i] = int32(order.Uint32(raw[4*i:]))
		case size == 2 && kind == 'i':
			data[i] = int32(int16(order.Uint16(raw[2*i:])))
		case size == 2:
			data[i] = int32(order.Uint16(raw[2*i:]))
		default:
			data[i] = int32(int8(raw[i]))
		}
	}
	return checkpoint.NewI32(data, shape...)
}
