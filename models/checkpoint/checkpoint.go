// Package checkpoint reads and writes model checkpoint files as host tensors.
//
// Supported formats:
//   - safetensors (read and write): F32, F64, F16, BF16, I64, I32, U8 and BOOL
//     tensors plus the string-valued __metadata__ table.
//   - PyTorch torch.save zip archives (".pt", ".pth", ".bin"; read only): a plain
//     state_dict, or a training checkpoint dict holding "ema", "state_dict" or
//     "model" (in that order of preference). Pickled classes other than the
//     torch tensor machinery (argparse.Namespace, optimizer state, ...) are
//     tolerated and ignored.
//
// Legacy (pre-1.6, non-zip) torch.save files and TorchScript archives are not
// supported. Every reader validates the file against its own structure and
// returns an error, never a panic, on malformed input.
package checkpoint

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// DType names an element type as safetensors spells it.
type DType string

// Element types this package can read and write.
const (
	F32  DType = "F32"  // float32
	F64  DType = "F64"  // float64
	F16  DType = "F16"  // IEEE half, held as []float32 in memory
	BF16 DType = "BF16" // bfloat16, held as []float32 in memory
	I64  DType = "I64"  // int64
	I32  DType = "I32"  // int32
	U8   DType = "U8"   // uint8
	Bool DType = "BOOL" // bool, one byte per element in files
)

// Size is the number of bytes one element takes in a file, or 0 for a dtype this package does not support.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16:
		return 2
	case U8, Bool:
		return 1
	}
	return 0
}

// goType is the Go slice type that Tensor.Data holds for d.
func (d DType) goType() string {
	switch d {
	case F32, F16, BF16:
		return "[]float32"
	case F64:
		return "[]float64"
	case I64:
		return "[]int64"
	case I32:
		return "[]int32"
	case U8:
		return "[]uint8"
	case Bool:
		return "[]bool"
	}
	return "?"
}

// supportedDTypes is listed in errors so a user knows what would have worked.
const supportedDTypes = "F32 F64 F16 BF16 I64 I32 U8 BOOL"

// Tensor is a host tensor read from or written to a checkpoint file (row-major).
//
// Data is []float32 (F32; also F16/BF16, which are upcast on read while DType
// keeps the file's type), []float64, []int64, []int32, []uint8 or []bool.
// Tensors read from a .pt file whose tensors shared one storage may share memory.
type Tensor struct {
	DType DType
	Shape []int
	Data  any
}

// NewF32 wraps data (not copied) as an F32 tensor; with no shape it is a scalar.
func NewF32(data []float32, shape ...int) *Tensor { return newTensor(F32, data, shape) }

// NewF64 wraps data (not copied) as an F64 tensor; with no shape it is a scalar.
func NewF64(data []float64, shape ...int) *Tensor { return newTensor(F64, data, shape) }

// NewI64 wraps data (not copied) as an I64 tensor; with no shape it is a scalar.
func NewI64(data []int64, shape ...int) *Tensor { return newTensor(I64, data, shape) }

// NewI32 wraps data (not copied) as an I32 tensor; with no shape it is a scalar.
func NewI32(data []int32, shape ...int) *Tensor { return newTensor(I32, data, shape) }

// NewU8 wraps data (not copied) as a U8 tensor; with no shape it is a scalar.
func NewU8(data []uint8, shape ...int) *Tensor { return newTensor(U8, data, shape) }

// NewBool wraps data (not copied) as a BOOL tensor; with no shape it is a scalar.
func NewBool(data []bool, shape ...int) *Tensor { return newTensor(Bool, data, shape) }

func newTensor(d DType, data any, shape []int) *Tensor {
	// The caller may reuse its shape slice (f(x, s...)), so keep a private copy.
	return &Tensor{DType: d, Shape: slices.Clone(shape), Data: data}
}

// Len is the number of elements: the product of Shape, 1 for a scalar.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// dataLen is len(t.Data), or -1 when Data is not one of the supported slice types.
func (t *Tensor) dataLen() int {
	switch v := t.Data.(type) {
	case []float32:
		return len(v)
	case []float64:
		return len(v)
	case []int64:
		return len(v)
	case []int32:
		return len(v)
	case []uint8:
		return len(v)
	case []bool:
		return len(v)
	}
	return -1
}

// Float32 returns the values as float32, converting any numeric dtype; []float32 data is returned as is, not copied.
func (t *Tensor) Float32() ([]float32, error) {
	switch v := t.Data.(type) {
	case []float32:
		return v, nil
	case []float64:
		return convert[float32](v), nil
	case []int64:
		return convert[float32](v), nil
	case []int32:
		return convert[float32](v), nil
	case []uint8:
		return convert[float32](v), nil
	case []bool:
		return boolsTo[float32](v), nil
	}
	return nil, fmt.Errorf("checkpoint: tensor data is %T, not a numeric slice", t.Data)
}

// Float64 returns the values as float64, converting any numeric dtype; []float64 data is returned as is, not copied.
func (t *Tensor) Float64() ([]float64, error) {
	switch v := t.Data.(type) {
	case []float64:
		return v, nil
	case []float32:
		return convert[float64](v), nil
	case []int64:
		return convert[float64](v), nil
	case []int32:
		return convert[float64](v), nil
	case []uint8:
		return convert[float64](v), nil
	case []bool:
		return boolsTo[float64](v), nil
	}
	return nil, fmt.Errorf("checkpoint: tensor data is %T, not a numeric slice", t.Data)
}

// Int64 returns the values of an integer (or bool) tensor as int64; []int64 data is returned as is, and float tensors are an error.
func (t *Tensor) Int64() ([]int64, error) {
	switch v := t.Data.(type) {
	case []int64:
		return v, nil
	case []int32:
		return convert[int64](v), nil
	case []uint8:
		return convert[int64](v), nil
	case []bool:
		return boolsTo[int64](v), nil
	case []float32, []float64:
		// Silently truncating weights or timesteps would hide a wrong-tensor bug.
		return nil, fmt.Errorf("checkpoint: tensor is %s, not an integer dtype (want I64, I32, U8 or BOOL)", t.DType)
	}
	return nil, fmt.Errorf("checkpoint: tensor data is %T, not a numeric slice", t.Data)
}

type number interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~uint8
}

func convert[To, From number](src []From) []To {
	out := make([]To, len(src))
	for i, v := range src {
		out[i] = To(v)
	}
	return out
}

func boolsTo[To number](src []bool) []To {
	out := make([]To, len(src))
	for i, v := range src {
		if v {
			out[i] = 1
		}
	}
	return out
}

// File is the contents of one checkpoint.
type File struct {
	Path     string
	Tensors  map[string]*Tensor
	Metadata map[string]string // safetensors __metadata__, nil for .pt
}

// Names lists the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for k := range f.Tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Get returns the named tensor, or an error naming the file and the key when it is missing.
func (f *File) Get(name string) (*Tensor, error) {
	t, ok := f.Tensors[name]
	if !ok || t == nil {
		return nil, errorf(f.Path, "no tensor %q (the file has %d tensors)", name, len(f.Tensors))
	}
	return t, nil
}

// zipMagic starts every zip archive that has at least one entry (torch.save writes several).
const zipMagic = "PK\x03\x04"

// emptyZipMagic starts an archive with no entries; it is still a zip, not safetensors.
const emptyZipMagic = "PK\x05\x06"

// Load reads a checkpoint, choosing the format from the content (a zip archive is a PyTorch file, anything else safetensors), not from the extension.
func Load(path string) (*File, error) {
	f, size, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var head [9]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errorf(path, "read: %w", err)
	}
	magic := head[:min(n, 4)]
	switch m := string(magic); {
	case m == zipMagic || m == emptyZipMagic:
		return readPT(path, f, size)
	case n == 9 && head[8] == '{':
		// A safetensors header (8-byte length, then JSON). Checked before the pickle magic:
		// a header length of 0x0280 or 0x0380… starts with the same two bytes.
	case n >= 2 && magic[0] == 0x80 && magic[1] <= 5:
		// A pickle protocol header: torch.save before PyTorch 1.6 (or with
		// _use_new_zipfile_serialization=False) wrote a bare pickle stream.
		return nil, errorf(path, "legacy (pre-1.6, non-zip) torch.save file is not supported; re-save it with a current PyTorch or convert it to safetensors")
	}
	return readSafetensors(path, f, size)
}

// FileHash returns the hex SHA-256 of the file's bytes, to record which weights a run used.
func FileHash(path string) (string, error) {
	f, _, err := openFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", errorf(path, "read: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openFile opens a regular file and returns its size.
func openFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, errorf(path, "open: %w", unwrapPath(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, errorf(path, "stat: %w", unwrapPath(err))
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, errorf(path, "is a directory, not a checkpoint file")
	}
	return f, st.Size(), nil
}

// unwrapPath drops the *fs.PathError wrapper because errorf already names the path;
// errors.Is(err, fs.ErrNotExist) still works on the result.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// errorf formats errors as "checkpoint: <path>: <what>".
func errorf(path, format string, args ...any) error {
	return fmt.Errorf("checkpoint: %s: "+format, append([]any{path}, args...)...)
}

// numElements multiplies dims, reporting negative dims and int64 overflow.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v has more than 2^63 elements", shape)
		}
		n *= d
	}
	return n, nil
}

// Keys lists a checkpoint's tensor names, sorted: from the header alone for safetensors (a
// multi-gigabyte file is not read to learn what it holds), by loading it otherwise.
func Keys(path string) ([]string, error) {
	f, size, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var head [9]byte
	n, _ := f.ReadAt(head[:], 0)
	if n == 9 && head[8] == '{' {
		hdrLen := binary.LittleEndian.Uint64(head[:8])
		if hdrLen <= maxHeaderLen && hdrLen <= uint64(size-8) {
			hdr := make([]byte, hdrLen)
			if err := readFullAt(f, hdr, 8); err != nil {
				return nil, errorf(path, "read header: %w", err)
			}
			entries, _, err := parseHeader(hdr)
			if err != nil {
				return nil, errorf(path, "bad header: %w", err)
			}
			names := make([]string, len(entries))
			for i, e := range entries {
				names[i] = e.name
			}
			sort.Strings(names)
			return names, nil
		}
	}
	full, err := Load(path)
	if err != nil {
		return nil, err
	}
	return full.Names(), nil
}

// sdParts are the parts of a whole Stable Diffusion v1 checkpoint, by key prefix.
var sdParts = []struct{ prefix, name string }{
	{"model.diffusion_model.", "the UNet"},
	{"first_stage_model.", "the VAE"},
	{"cond_stage_model.", "the text encoder"},
}

// SDParts names the parts of a whole Stable Diffusion checkpoint that f holds ("the UNet
// (model.diffusion_model.*)", …), so a loader missing its part can say what is there instead.
func SDParts(f *File) []string {
	var out []string
	for _, p := range sdParts {
		for k := range f.Tensors {
			if strings.HasPrefix(k, p.prefix) {
				out = append(out, fmt.Sprintf("%s (%s*)", p.name, p.prefix))
				break
			}
		}
	}
	return out
}
