package checkpoint

// PyTorch torch.save (zip) reader.
//
// The pickle VM is github.com/nlpodyssey/gopickle's, but this file drives it
// itself instead of calling pytorch.Load or pytorch.LoadWithUnpickler
// (gopickle v0.2.0), because those
//   - install their own PersistentLoad, which reads every storage in the archive
//     eagerly (the model, EMA and optimizer tensors of a training checkpoint,
//     four times the weights) and allocates the element count the pickle claims
//     before comparing it with the zip record, so a 100-byte file can make it
//     allocate terabytes, a fatal error recover() cannot catch;
//   - accept only the 6-argument torch._utils._rebuild_tensor_v2, while current
//     PyTorch appends a 7th (tensor metadata) when it has any.
// Here storages are checked against their zip records when the pickle names
// them and read only for the tensors that are returned.

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// maxPickleBytes caps data.pkl; tensors live in separate records, so even a
// large training checkpoint's pickle is a few MB.
const maxPickleBytes = 256 << 20

// maxExtraBytes caps how much more memory the returned tensors may take than
// the storages they come from. Overlapping or stride-0 views (torch.expand)
// can repeat storage, so without a cap a tiny crafted file could demand any
// amount of memory; real state dicts copy each storage byte about once.
var maxExtraBytes int64 = 1 << 30

// maxDeflateRatio is the most DEFLATE can expand data; a record claiming more is corrupt.
const maxDeflateRatio = 1032

// ReadPT reads the tensors of a torch.save zip archive, preferring its "ema", then "state_dict", then "model" entry.
func ReadPT(path string) (*File, error) {
	f, size, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readPT(path, f, size)
}

// ptArchive is an open torch.save archive.
type ptArchive struct {
	path      string
	size      int64
	prefix    string // the folder all records live in, with a trailing "/"
	records   map[string]*zip.File
	bigEndian bool
	storages  map[string]*ptStorage
	budget    int64 // bytes tensors may still copy; see maxExtraBytes
}

// ptStorageClass is a torch.<Type>Storage class named in the pickle.
type ptStorageClass struct {
	name     string
	dtype    DType // "" when this package cannot represent the type
	elemSize int
}

var ptStorageClasses = map[string]*ptStorageClass{}

func init() {
	for _, c := range []ptStorageClass{
		{"FloatStorage", F32, 4}, {"DoubleStorage", F64, 8}, {"HalfStorage", F16, 2},
		{"BFloat16Storage", BF16, 2}, {"LongStorage", I64, 8}, {"IntStorage", I32, 4},
		{"ByteStorage", U8, 1}, {"BoolStorage", Bool, 1},
		{"CharStorage", "", 1}, {"ShortStorage", "", 2},
		{"ComplexFloatStorage", "", 8}, {"ComplexDoubleStorage", "", 16},
	} {
		ptStorageClasses[c.name] = &c
	}
}

// ptStorage is one storage record; data is read on first use.
type ptStorage struct {
	class *ptStorageClass
	key   string
	numel int
	rec   *zip.File
	data  any
}

// ptTensor is a strided view of a storage, as torch._utils._rebuild_tensor_v2 describes it.
type ptTensor struct {
	storage *ptStorage
	offset  int
	size    []int
	stride  []int
}

// pyClass stands in for every Python class or function the reader has no use
// for (argparse.Namespace, torch.Size, optimizer classes, ...), so that the
// pickles holding them still load. gopickle's own types.GenericClass is not
// enough: its objects reject the BUILD opcode that restores an instance's
// __dict__, which is how argparse.Namespace is pickled.
type pyClass struct{ module, name string }

// pyObject is an instance of a pyClass; its contents are kept but never used.
type pyObject struct {
	class *pyClass
	args  []any
	state any
}

// Call handles REDUCE (calling a class or function).
func (c *pyClass) Call(args ...any) (any, error) { return &pyObject{class: c, args: args}, nil }

// PyNew handles NEWOBJ (cls.__new__).
func (c *pyClass) PyNew(args ...any) (any, error) { return &pyObject{class: c, args: args}, nil }

// PySetState handles BUILD; accepting any state is what lets argparse.Namespace load.
func (o *pyObject) PySetState(state any) error { o.state = state; return nil }

// pyFunc is a torch function the reader implements.
type pyFunc func(args []any) (any, error)

// Call handles REDUCE.
func (f pyFunc) Call(args ...any) (any, error) { return f(args) }

// readPT parses a torch.save zip image of the given size; path only labels errors.
func readPT(path string, r io.ReaderAt, size int64) (*File, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, errorf(path, "not a readable zip archive: %w", err)
	}
	a, err := openPTArchive(path, zr, size)
	if err != nil {
		return nil, err
	}
	pkl, err := a.readSmallRecord(a.prefix+"data.pkl", maxPickleBytes)
	if err != nil {
		return nil, err
	}
	if err := checkPickle(pkl); err != nil {
		return nil, errorf(path, "malformed %sdata.pkl: %w", a.prefix, err)
	}
	top, err := a.unpickle(pkl)
	if err != nil {
		return nil, errorf(path, "%sdata.pkl: %w", a.prefix, err)
	}
	a.budget = maxExtraBytes
	for _, st := range a.storages {
		a.budget += int64(st.numel) * int64(st.class.elemSize)
	}
	items, from, err := selectStateDict(top)
	if err != nil {
		return nil, errorf(path, "%w", err)
	}
	where := ""
	if from != "" {
		where = fmt.Sprintf(" in entry %q", from)
	}
	tensors := make(map[string]*Tensor, len(items))
	for _, it := range items {
		key, ok := it.key.(string)
		if !ok {
			return nil, errorf(path, "state dict%s has a key that is %s, not a string", where, describe(it.key))
		}
		pt, ok := it.value.(*ptTensor)
		if !ok {
			return nil, errorf(path, "key %q%s holds %s, not a tensor", key, where, describe(it.value))
		}
		t, err := a.materialize(pt)
		if err != nil {
			return nil, errorf(path, "tensor %q%s: %w", key, where, err)
		}
		tensors[key] = t
	}
	return &File{Path: path, Tensors: stripModulePrefix(tensors)}, nil
}

// openPTArchive finds the record folder and checks that the zip is a torch.save archive.
func openPTArchive(path string, zr *zip.Reader, size int64) (*ptArchive, error) {
	a := &ptArchive{path: path, size: size, records: map[string]*zip.File{}, storages: map[string]*ptStorage{}}
	var pkls []string
	for _, f := range zr.File {
		a.records[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkls = append(pkls, f.Name)
		}
	}
	switch len(pkls) {
	case 0:
		return nil, errorf(path, "zip archive is not a torch.save file (no <folder>/data.pkl record among %d records)", len(zr.File))
	case 1:
	default:
		return nil, errorf(path, "zip archive has %d data.pkl records (%s), expected one", len(pkls), strings.Join(pkls, ", "))
	}
	a.prefix = strings.TrimSuffix(pkls[0], "data.pkl")
	if _, ok := a.records[a.prefix+"constants.pkl"]; ok {
		return nil, errorf(path, "TorchScript archive (torch.jit.save) is not supported; save the state_dict with torch.save")
	}
	// Files without a byteorder record predate it and were written little-endian in practice.
	if _, ok := a.records[a.prefix+"byteorder"]; ok {
		b, err := a.readSmallRecord(a.prefix+"byteorder", 16)
		if err != nil {
			return nil, err
		}
		switch string(b) {
		case "little":
		case "big":
			a.bigEndian = true
		default:
			return nil, errorf(path, "%sbyteorder is %q (expected \"little\" or \"big\")", a.prefix, b)
		}
	}
	return a, nil
}

// checkRecord rejects a record whose sizes could not come from a real zip
// writer, before anything is allocated from them.
func (a *ptArchive) checkRecord(f *zip.File) error {
	c, u := f.CompressedSize64, f.UncompressedSize64
	if c > uint64(a.size) || (f.Method == zip.Store && u != c) || u/maxDeflateRatio > c {
		return errorf(a.path, "zip record %s claims %d bytes from %d stored bytes in a %d-byte file (corrupt archive)", f.Name, u, c, a.size)
	}
	return nil
}

// readSmallRecord reads a whole record of at most limit bytes.
func (a *ptArchive) readSmallRecord(name string, limit int64) ([]byte, error) {
	f := a.records[name]
	if f == nil {
		return nil, errorf(a.path, "zip record %s is missing", name)
	}
	if err := a.checkRecord(f); err != nil {
		return nil, err
	}
	if f.UncompressedSize64 > uint64(limit) {
		return nil, errorf(a.path, "zip record %s is %d bytes (limit %d)", name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, errorf(a.path, "open zip record %s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, errorf(a.path, "read zip record %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, errorf(a.path, "zip record %s is over %d bytes", name, limit)
	}
	return b, nil
}

// unpickle runs gopickle on data.pkl. gopickle v0.2.0 trusts its input in
// places (an empty LONG1 indexes byte -1, a []byte dict key is hashed); it
// runs on this goroutine, so such a panic is recovered here and reported as
// a malformed file.
func (a *ptArchive) unpickle(pkl []byte) (top any, err error) {
	defer func() {
		if p := recover(); p != nil {
			top, err = nil, fmt.Errorf("gopickle panicked: %s", clip(fmt.Sprint(p)))
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(pkl))
	u.FindClass = findClass
	u.PersistentLoad = a.persistentLoad
	top, err = u.Load()
	if err != nil {
		// gopickle formats offending values with %#v, which can be huge.
		return nil, errors.New(clip(err.Error()))
	}
	return top, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// findClass resolves the globals a pickle names. gopickle itself handles
// collections.OrderedDict before asking.
func findClass(module, name string) (any, error) {
	switch module + "." + name {
	case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
		return pyFunc(rebuildTensor), nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		// nn.Parameter(data, requires_grad, hooks[, state]): only data matters here.
		return pyFunc(func(args []any) (any, error) {
			if len(args) == 0 {
				return nil, errors.New("_rebuild_parameter called without arguments")
			}
			return args[0], nil
		}), nil
	case "torch._tensor._rebuild_from_type_v2":
		// Tensor subclasses: (func, type, args, state); the plain tensor is func(*args).
		return pyFunc(func(args []any) (any, error) {
			if len(args) < 3 {
				return nil, fmt.Errorf("_rebuild_from_type_v2 got %d arguments, expected 4", len(args))
			}
			fn, ok1 := args[0].(types.Callable)
			fa, ok2 := args[2].(*types.Tuple)
			if !ok1 || !ok2 {
				return nil, errors.New("_rebuild_from_type_v2 arguments are not (func, type, args, state)")
			}
			return fn.Call(*fa...)
		}), nil
	}
	if module == "torch" {
		if c, ok := ptStorageClasses[name]; ok {
			return c, nil
		}
	}
	return &pyClass{module: module, name: name}, nil
}

// persistentLoad resolves ('storage', class, key, location, numel) to its zip record.
func (a *ptArchive) persistentLoad(pid any) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() != 5 {
		return nil, fmt.Errorf("persistent id is %s, expected ('storage', class, key, location, numel)", describe(pid))
	}
	if kind, _ := t.Get(0).(string); kind != "storage" {
		return nil, fmt.Errorf("persistent id kind is %s, expected 'storage'", describe(t.Get(0)))
	}
	class, ok := t.Get(1).(*ptStorageClass)
	if !ok {
		return nil, fmt.Errorf("storage type %s is not supported (supported: %s)", describe(t.Get(1)), supportedDTypes)
	}
	key, ok1 := t.Get(2).(string)
	numel, ok2 := t.Get(4).(int)
	if !ok1 || !ok2 || numel < 0 {
		return nil, fmt.Errorf("storage id has key %s and size %s, expected a string and a non-negative int", describe(t.Get(2)), describe(t.Get(4)))
	}
	if s, ok := a.storages[key]; ok {
		if s.class != class || s.numel != numel {
			return nil, fmt.Errorf("storage %q is declared twice with different types or sizes", key)
		}
		return s, nil
	}
	name := a.prefix + "data/" + key
	rec := a.records[name]
	if rec == nil {
		return nil, fmt.Errorf("storage record %s is missing", name)
	}
	if err := a.checkRecord(rec); err != nil {
		return nil, err
	}
	if numel > math.MaxInt64/class.elemSize || uint64(numel*class.elemSize) != rec.UncompressedSize64 {
		return nil, fmt.Errorf("storage record %s has %d bytes, but %d torch.%s elements need %d", name, rec.UncompressedSize64, numel, class.name, int64(numel)*int64(class.elemSize))
	}
	s := &ptStorage{class: class, key: key, numel: numel, rec: rec}
	a.storages[key] = s
	return s, nil
}

// rebuildTensor is torch._utils._rebuild_tensor(_v2): (storage, offset, size, stride[, requires_grad, hooks[, metadata]]).
func rebuildTensor(args []any) (any, error) {
	if len(args) != 4 && len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 got %d arguments, expected 4, 6 or 7", len(args))
	}
	s, ok := args[0].(*ptStorage)
	if !ok {
		return nil, fmt.Errorf("tensor storage is %s", describe(args[0]))
	}
	offset, ok := args[1].(int)
	if !ok || offset < 0 {
		return nil, fmt.Errorf("tensor storage offset is %s, expected a non-negative int", describe(args[1]))
	}
	size, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("tensor size %v and stride %v differ in rank", size, stride)
	}
	return &ptTensor{storage: s, offset: offset, size: size, stride: stride}, nil
}

// intTuple reads a tuple of non-negative ints (torch sizes and strides are never negative).
func intTuple(v any, what string) ([]int, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("tensor %s is %s, expected a tuple", what, describe(v))
	}
	out := make([]int, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok || n < 0 {
			return nil, fmt.Errorf("tensor %s[%d] is %s, expected a non-negative int", what, i, describe(t.Get(i)))
		}
		out[i] = n
	}
	return out, nil
}

// materialize reads the view's storage and returns the view as a row-major tensor.
func (a *ptArchive) materialize(pt *ptTensor) (*Tensor, error) {
	s := pt.storage
	if s.class.dtype == "" {
		return nil, fmt.Errorf("storage type torch.%s is not supported (supported: %s)", s.class.name, supportedDTypes)
	}
	shape := make([]int64, len(pt.size))
	for i, d := range pt.size {
		shape[i] = int64(d)
	}
	numel, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	if numel > 0 {
		// The highest element the view touches must lie inside the storage.
		last := int64(pt.offset)
		for i, d := range pt.size {
			st := int64(pt.stride[i])
			if d > 1 && st > (math.MaxInt64-last)/int64(d-1) {
				return nil, fmt.Errorf("size %v with stride %v overflows", pt.size, pt.stride)
			}
			last += int64(d-1) * st
		}
		if last >= int64(s.numel) {
			return nil, fmt.Errorf("view (offset %d, size %v, stride %v) reaches element %d of a %d-element storage", pt.offset, pt.size, pt.stride, last, s.numel)
		}
	}
	// A view that is its whole storage shares its memory (see gather); any
	// other view is a copy and is charged against the budget.
	if !(pt.offset == 0 && numel == int64(s.numel) && contiguous(pt.size, pt.stride)) {
		size := int64(s.class.elemSize)
		// Testing numel first keeps numel*size from overflowing.
		if numel > a.budget || numel*size > a.budget {
			return nil, fmt.Errorf("view of size %v, stride %v over a %d-element storage copies too much: the tensors may take at most %d bytes more than their storages (overlapping or stride-0 views)", pt.size, pt.stride, s.numel, maxExtraBytes)
		}
		a.budget -= numel * size
	}
	if err := a.load(s); err != nil {
		return nil, err
	}
	t := &Tensor{DType: s.class.dtype, Shape: slices.Clone(pt.size)}
	n := int(numel)
	switch d := s.data.(type) {
	case []float32:
		t.Data = gather(d, pt, n)
	case []float64:
		t.Data = gather(d, pt, n)
	case []int64:
		t.Data = gather(d, pt, n)
	case []int32:
		t.Data = gather(d, pt, n)
	case []uint8:
		t.Data = gather(d, pt, n)
	case []bool:
		t.Data = gather(d, pt, n)
	}
	return t, nil
}

// load reads a storage record once.
func (a *ptArchive) load(s *ptStorage) error {
	if s.data != nil {
		return nil
	}
	rc, err := s.rec.Open()
	if err != nil {
		return fmt.Errorf("open storage record %s: %w", s.rec.Name, err)
	}
	defer rc.Close()
	data, err := readElems(rc, s.class.dtype, s.numel, a.bigEndian)
	if err != nil {
		return fmt.Errorf("read storage record %s: %w", s.rec.Name, err)
	}
	// Reading on to EOF makes archive/zip verify the record's CRC-32.
	if _, err := rc.Read(make([]byte, 1)); err != io.EOF {
		if err == nil {
			err = errors.New("longer than declared")
		}
		return fmt.Errorf("read storage record %s: %w", s.rec.Name, err)
	}
	s.data = data
	return nil
}

// gather copies a strided view into row-major order. A view that is exactly
// its whole contiguous storage shares the storage's memory instead.
func gather[T any](src []T, pt *ptTensor, n int) []T {
	if n == 0 {
		return []T{}
	}
	rank := len(pt.size)
	if contiguous(pt.size, pt.stride) {
		if pt.offset == 0 && n == len(src) {
			return src
		}
		return slices.Clone(src[pt.offset : pt.offset+n])
	}
	out := make([]T, n)
	inner, innerStride := pt.size[rank-1], pt.stride[rank-1]
	idx := make([]int, rank-1)
	pos := pt.offset
	for o := 0; o < n; o += inner {
		if innerStride == 1 {
			copy(out[o:o+inner], src[pos:pos+inner])
		} else {
			for j := range inner {
				out[o+j] = src[pos+j*innerStride]
			}
		}
		for d := rank - 2; d >= 0; d-- {
			idx[d]++
			pos += pt.stride[d]
			if idx[d] < pt.size[d] {
				break
			}
			pos -= pt.stride[d] * pt.size[d]
			idx[d] = 0
		}
	}
	return out
}

// contiguous reports whether stride is the row-major stride of size (ignoring size-1 dims, as torch does).
func contiguous(size, stride []int) bool {
	want := 1
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return false
		}
		want *= size[i]
	}
	return true
}

// readElems reads n elements of dtype d from r into a new slice of the matching Go type.
func readElems(r io.Reader, d DType, n int, bigEndian bool) (any, error) {
	swap := bigEndian == nativeLE // the file's byte order differs from the host's
	switch d {
	case F32:
		return readWords[float32](r, n, swap)
	case F64:
		return readWords[float64](r, n, swap)
	case I64:
		return readWords[int64](r, n, swap)
	case I32:
		return readWords[int32](r, n, swap)
	case U8:
		return readWords[uint8](r, n, false)
	case F16, BF16:
		s := make([]float32, n)
		buf := make([]byte, 2*min(n, chunkElems))
		for i := 0; i < n; i += chunkElems {
			m := min(n-i, chunkElems)
			if err := readFull(r, buf[:2*m]); err != nil {
				return nil, err
			}
			if bigEndian {
				swapBytes(buf[:2*m], 2)
			}
			decodeHalf(s[i:i+m], buf[:2*m], d)
		}
		return s, nil
	case Bool:
		s := make([]bool, n)
		buf := make([]byte, min(n, chunkElems))
		for i := 0; i < n; i += chunkElems {
			m := min(n-i, chunkElems)
			if err := readFull(r, buf[:m]); err != nil {
				return nil, err
			}
			for j, b := range buf[:m] {
				s[i+j] = b != 0
			}
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported dtype %q", d)
}

// readWords reads n elements straight into a new slice's memory, then fixes the byte order if needed.
func readWords[T float32 | float64 | int64 | int32 | uint8](r io.Reader, n int, swap bool) ([]T, error) {
	s := make([]T, n)
	b := asBytes(s)
	if err := readFull(r, b); err != nil {
		return nil, err
	}
	if swap {
		var zero T
		swapBytes(b, int(unsafe.Sizeof(zero)))
	}
	return s, nil
}

// readFull is io.ReadFull that reports truncation as io.ErrUnexpectedEOF even when nothing was read.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// kv is one dict entry, in pickle order.
type kv struct{ key, value any }

// dictItems lists a pickled dict's entries; ok is false for non-dicts.
func dictItems(v any) (items []kv, ok bool) {
	switch d := v.(type) {
	case *types.Dict:
		for _, e := range *d {
			items = append(items, kv{e.Key, e.Value})
		}
		return items, true
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			if oe, ok := e.Value.(*types.OrderedDictEntry); ok {
				items = append(items, kv{oe.Key, oe.Value})
			}
		}
		return items, true
	}
	return nil, false
}

// lookup finds key the way Python does: types.Dict keeps repeated SETITEMs of
// one key as separate entries, and the last one is the dict's value.
func lookup(items []kv, key string) (any, bool) {
	var v any
	found := false
	for _, it := range items {
		if k, ok := it.key.(string); ok && k == key {
			v, found = it.value, true
		}
	}
	return v, found
}

// selectStateDict picks the weights: the top-level dict itself when it maps
// names to tensors, else its "ema" entry (DiT inference must use EMA weights),
// else "state_dict", else "model". from names the entry used.
func selectStateDict(top any) (items []kv, from string, err error) {
	items, ok := dictItems(top)
	if !ok {
		return nil, "", fmt.Errorf("top-level object is %s, not a dict", describe(top))
	}
	allTensors := true
	for _, it := range items {
		if _, ok := it.value.(*ptTensor); !ok {
			allTensors = false
			break
		}
	}
	if allTensors {
		return items, "", nil
	}
	for _, key := range []string{"ema", "state_dict", "model"} {
		v, ok := lookup(items, key)
		if !ok {
			continue
		}
		sub, ok := dictItems(v)
		if !ok {
			return nil, "", fmt.Errorf("entry %q is %s, not a state dict", key, describe(v))
		}
		return sub, key, nil
	}
	// Not a checkpoint layout we know: report the first non-tensor value.
	return items, "", nil
}

// stripModulePrefix removes the "module." that DataParallel/DDP put on every key.
func stripModulePrefix(m map[string]*Tensor) map[string]*Tensor {
	if len(m) == 0 {
		return m
	}
	for k := range m {
		if !strings.HasPrefix(k, "module.") {
			return m
		}
	}
	out := make(map[string]*Tensor, len(m))
	for k, v := range m {
		out[strings.TrimPrefix(k, "module.")] = v
	}
	return out
}

// describe names a pickled value's type for error messages without printing
// the value, which may be huge or self-referencing.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case *pyObject:
		return "an object of class " + x.class.module + "." + x.class.name
	case *pyClass:
		return x.module + "." + x.name
	case *ptStorageClass:
		return "torch." + x.name
	case pyFunc:
		return "a torch function"
	case *ptTensor:
		return "a tensor"
	case *ptStorage:
		return "a storage"
	case *types.Dict, *types.OrderedDict:
		return "a dict"
	case *types.List:
		return "a list"
	case *types.Tuple:
		return "a tuple"
	case string:
		return fmt.Sprintf("the string %q", clip(x))
	case int, *big.Int:
		return fmt.Sprintf("the int %v", x)
	case float64:
		return fmt.Sprintf("the float %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	}
	return fmt.Sprintf("a %T", v)
}

// checkPickle walks the opcodes of a pickle and rejects any length argument
// that runs past the end of the data. gopickle allocates such lengths before
// reading (BINBYTES8, FRAME, ...), and an allocation the machine cannot
// satisfy is a fatal error that recover() cannot catch.
func checkPickle(p []byte) error {
	i := 0
	for i < len(p) {
		op, at := p[i], i
		i++
		var n uint64 // bytes of argument after the fixed part
		fixed := 0
		switch op {
		case '.': // STOP
			return nil
		case 0x80, 'K', 'h', 'q', 0x82: // PROTO BININT1 BINGET BINPUT EXT1
			fixed = 1
		case 'M', 0x83: // BININT2 EXT2
			fixed = 2
		case 'J', 'j', 'r', 0x84: // BININT LONG_BINGET LONG_BINPUT EXT4
			fixed = 4
		case 'G': // BINFLOAT
			fixed = 8
		case 0x95: // FRAME: the frame's opcodes follow inline
			if i+8 > len(p) {
				return fmt.Errorf("pickle ends inside opcode 0x%02x at byte %d", op, at)
			}
			if f := binary.LittleEndian.Uint64(p[i:]); f > uint64(len(p)-i-8) {
				return fmt.Errorf("FRAME at byte %d declares %d bytes but %d remain", at, f, len(p)-i-8)
			}
			fixed = 8
		case 0x8a, 'U', 'C', 0x8c: // LONG1 SHORT_BINSTRING SHORT_BINBYTES SHORT_BINUNICODE
			if i+1 > len(p) {
				return fmt.Errorf("pickle ends inside opcode 0x%02x at byte %d", op, at)
			}
			fixed, n = 1, uint64(p[i])
		case 0x8b, 'T', 'B', 'X': // LONG4 BINSTRING BINBYTES BINUNICODE
			if i+4 > len(p) {
				return fmt.Errorf("pickle ends inside opcode 0x%02x at byte %d", op, at)
			}
			fixed, n = 4, uint64(binary.LittleEndian.Uint32(p[i:]))
		case 0x8e, 0x8d, 0x96: // BINBYTES8 BINUNICODE8 BYTEARRAY8
			if i+8 > len(p) {
				return fmt.Errorf("pickle ends inside opcode 0x%02x at byte %d", op, at)
			}
			fixed, n = 8, binary.LittleEndian.Uint64(p[i:])
		case 'I', 'L', 'F', 'S', 'V', 'P', 'g', 'p', 'c', 'i': // newline-terminated arguments
			lines := 1
			if op == 'c' || op == 'i' {
				lines = 2
			}
			for range lines {
				j := bytes.IndexByte(p[i:], '\n')
				if j < 0 {
					return fmt.Errorf("pickle ends inside opcode 0x%02x at byte %d", op, at)
				}
				i += j + 1
			}
			continue
		}
		if i+fixed > len(p) || n > uint64(len(p)-i-fixed) {
			return fmt.Errorf("opcode 0x%02x at byte %d declares %d bytes but %d remain", op, at, n, len(p)-min(i+fixed, len(p)))
		}
		i += fixed + int(n)
	}
	return errors.New("pickle has no STOP opcode")
}
