package checkpoint

// The safetensors format is parsed here by hand instead of with
// github.com/nlpodyssey/safetensors (project policy prefers libraries) because
// that package does not fit:
//   - it parses from one []byte holding the whole file, i.e. a platform-specific
//     mmap or a second in-memory copy of a 2.5 GB checkpoint, where ReadAt
//     straight into each tensor's typed slice needs neither;
//   - its errors do not say which tensor is wrong, nor what was expected and
//     what was found ("invalid header length", "metadata incomplete buffer");
//   - its writer orders tensor data by dtype alignment, then name, where this
//     package promises name order, and its NewTensorView counts a scalar
//     (shape []) as 0 elements.
// The format is small: an 8-byte little-endian header length, a JSON header,
// then the packed little-endian tensor data.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"
)

// maxHeaderLen is the reference implementation's limit; it stops a corrupt
// length prefix from making the reader allocate gigabytes.
const maxHeaderLen = 100_000_000

// metadataKey is the reserved header entry holding string metadata.
const metadataKey = "__metadata__"

// chunkElems bounds the scratch buffer used for dtypes that need converting
// (F16, BF16, BOOL, big-endian hosts), so conversion never doubles a tensor.
const chunkElems = 1 << 16

// ReadSafetensors reads a whole safetensors file into host tensors.
func ReadSafetensors(path string) (*File, error) {
	f, size, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readSafetensors(path, f, size)
}

// stEntry is one tensor's header entry after validation.
type stEntry struct {
	name       string
	dtype      DType
	shape      []int64
	numel      int64
	begin, end int64 // relative to the start of the data section
}

// readSafetensors parses a safetensors image of the given size; path only labels errors.
func readSafetensors(path string, r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, errorf(path, "too short for a safetensors file (need at least 8 bytes, got %d)", size)
	}
	var prefix [8]byte
	if err := readFullAt(r, prefix[:], 0); err != nil {
		return nil, errorf(path, "read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > maxHeaderLen {
		return nil, errorf(path, "header length %d is over the %d-byte limit (not a safetensors file?)", n, maxHeaderLen)
	}
	if n > uint64(size-8) {
		return nil, errorf(path, "header length %d runs past the end of the file (only %d bytes follow the length prefix)", n, size-8)
	}
	hdr := make([]byte, n)
	if err := readFullAt(r, hdr, 8); err != nil {
		return nil, errorf(path, "read header: %w", err)
	}
	entries, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, errorf(path, "bad header: %w", err)
	}
	dataStart := 8 + int64(n)
	if err := checkLayout(entries, size-dataStart); err != nil {
		return nil, errorf(path, "%w", err)
	}
	tensors := make(map[string]*Tensor, len(entries))
	for _, e := range entries {
		t, err := readEntry(r, dataStart, e)
		if err != nil {
			return nil, errorf(path, "read tensor %q: %w", e.name, err)
		}
		tensors[e.name] = t
	}
	return &File{Path: path, Tensors: tensors, Metadata: meta}, nil
}

// parseHeader decodes and checks the JSON header, entry by entry.
func parseHeader(hdr []byte) ([]stEntry, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("header is not a JSON object")
	}
	var (
		entries []stEntry
		meta    map[string]string
		// encoding/json keeps the last of duplicate keys silently; a duplicate
		// tensor name means a broken writer, so it is reported instead.
		seen = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("invalid JSON: object key is %v", tok)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("invalid JSON in entry %q: %w", key, err)
		}
		if key == metadataKey {
			if meta, err = parseMetadata(raw); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := parseEntry(key, raw)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	// Only the space padding may follow the object.
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("unexpected data after the JSON object")
	}
	return entries, meta, nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%s is not a JSON object of strings", metadataKey)
	}
	meta := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s[%q] is not a string", metadataKey, k)
		}
		meta[k] = s
	}
	return meta, nil
}

func parseEntry(name string, raw json.RawMessage) (stEntry, error) {
	if k := jsonKind(raw); k != "an object" {
		return stEntry{}, fmt.Errorf("entry is %s, expected {dtype, shape, data_offsets}", k)
	}
	// RawMessage fields tell a missing field (nil) from an explicit null.
	var v struct {
		DType       json.RawMessage `json:"dtype"`
		Shape       json.RawMessage `json:"shape"`
		DataOffsets json.RawMessage `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return stEntry{}, fmt.Errorf("invalid entry: %w", err)
	}
	var (
		dtype string
		shape []int64
		offs  []int64
	)
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  any
		want string
	}{
		{"dtype", v.DType, &dtype, "a string"},
		{"shape", v.Shape, &shape, "an array of integers (a scalar is [])"},
		{"data_offsets", v.DataOffsets, &offs, "an array of two integers"},
	} {
		if f.raw == nil {
			return stEntry{}, fmt.Errorf("missing %s", f.name)
		}
		if jsonKind(f.raw) == "null" || json.Unmarshal(f.raw, f.dst) != nil {
			return stEntry{}, fmt.Errorf("%s is %s, expected %s", f.name, clip(string(f.raw)), f.want)
		}
	}
	e := stEntry{name: name, dtype: DType(dtype), shape: shape}
	if e.dtype.Size() == 0 {
		switch e.dtype {
		case "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64":
			return stEntry{}, fmt.Errorf("dtype %s is not supported (supported: %s)", e.dtype, supportedDTypes)
		}
		return stEntry{}, fmt.Errorf("unknown dtype %q (supported: %s)", e.dtype, supportedDTypes)
	}
	if len(offs) != 2 {
		return stEntry{}, fmt.Errorf("data_offsets has %d values (expected [begin, end])", len(offs))
	}
	e.begin, e.end = offs[0], offs[1]
	if e.begin < 0 || e.end < e.begin {
		return stEntry{}, fmt.Errorf("data_offsets [%d, %d] are not 0 <= begin <= end", e.begin, e.end)
	}
	numel, err := numElements(e.shape)
	if err != nil {
		return stEntry{}, err
	}
	size := int64(e.dtype.Size())
	if numel > math.MaxInt64/size || numel > math.MaxInt {
		return stEntry{}, fmt.Errorf("shape %v is too large", e.shape)
	}
	if want := numel * size; e.end-e.begin != want {
		return stEntry{}, fmt.Errorf("data_offsets [%d, %d] span %d bytes, but %s%v needs %d", e.begin, e.end, e.end-e.begin, e.dtype, e.shape, want)
	}
	e.numel = numel
	return e, nil
}

// jsonKind names the type of a JSON value from its first byte.
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 {
		return "empty"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// checkLayout enforces the reference layout: tensors packed back to back
// from offset 0 to the end of the file, no gaps, no overlaps.
func checkLayout(entries []stEntry, dataLen int64) error {
	for _, e := range entries {
		if e.end > dataLen {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] run past the end of the data section (%d bytes)", e.name, e.begin, e.end, dataLen)
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	pos := int64(0)
	prev := ""
	for _, e := range entries {
		switch {
		case e.begin < pos:
			return fmt.Errorf("tensor %q overlaps tensor %q (starts at data byte %d, expected %d)", e.name, prev, e.begin, pos)
		case e.begin > pos:
			return fmt.Errorf("gap before tensor %q (starts at data byte %d, expected %d)", e.name, e.begin, pos)
		}
		pos, prev = e.end, e.name
	}
	if pos != dataLen {
		return fmt.Errorf("tensors cover %d bytes but the data section has %d (trailing bytes)", pos, dataLen)
	}
	return nil
}

// readEntry reads one tensor's bytes once, straight into its typed slice where the dtype allows.
func readEntry(r io.ReaderAt, dataStart int64, e stEntry) (*Tensor, error) {
	t := &Tensor{DType: e.dtype, Shape: make([]int, len(e.shape))}
	for i, d := range e.shape {
		t.Shape[i] = int(d)
	}
	data, err := readElems(io.NewSectionReader(r, dataStart+e.begin, e.end-e.begin), e.dtype, int(e.numel), false)
	if err != nil {
		return nil, err
	}
	t.Data = data
	return t, nil
}

// readFullAt is ReadAt that treats a short read as an error even when the reader says io.EOF.
func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// WriteSafetensors writes tensors (sorted by name) and metadata to path atomically, via a temporary file in the same folder.
func WriteSafetensors(path string, tensors map[string]*Tensor, metadata map[string]string) (err error) {
	// Validate before touching the disk so a bad tensor leaves no debris.
	hdr, names, err := safetensorsHeader(tensors, metadata)
	if err != nil {
		return errorf(path, "%w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return errorf(path, "create temporary file: %w", unwrapPath(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := writeSafetensors(w, hdr, names, tensors); err != nil {
		return errorf(path, "write %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := w.Flush(); err != nil {
		return errorf(path, "write %s: %w", tmp.Name(), unwrapPath(err))
	}
	// Sync before rename so a crash cannot leave a renamed but empty file.
	if err := tmp.Sync(); err != nil {
		return errorf(path, "sync %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := tmp.Close(); err != nil {
		return errorf(path, "close %s: %w", tmp.Name(), unwrapPath(err))
	}
	// CreateTemp makes the file 0600; a checkpoint is an ordinary shared file.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return errorf(path, "chmod %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errorf(path, "rename %s: %w", tmp.Name(), err)
	}
	return nil
}

// encodeSafetensors writes a complete safetensors image to w (used by tests and fuzzing).
func encodeSafetensors(w io.Writer, tensors map[string]*Tensor, metadata map[string]string) error {
	hdr, names, err := safetensorsHeader(tensors, metadata)
	if err != nil {
		return err
	}
	return writeSafetensors(w, hdr, names, tensors)
}

// safetensorsHeader validates the tensors and returns the padded JSON header and the names in file order.
func safetensorsHeader(tensors map[string]*Tensor, metadata map[string]string) ([]byte, []string, error) {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		for k, v := range metadata {
			// encoding/json would silently replace invalid UTF-8, changing the text.
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("metadata entry %q is not valid UTF-8", k)
			}
		}
		m, err := json.Marshal(metadata) // sorts keys, so the header is deterministic
		if err != nil {
			return nil, nil, fmt.Errorf("encode metadata: %w", err)
		}
		b.WriteString(`"` + metadataKey + `":`)
		b.Write(m)
	}
	off := int64(0)
	for i, name := range names {
		t := tensors[name]
		if err := checkTensor(name, t); err != nil {
			return nil, nil, err
		}
		size := int64(t.Len()) * int64(t.DType.Size())
		if len(metadata) > 0 || i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name) // a valid UTF-8 string always marshals
		b.Write(k)
		fmt.Fprintf(&b, `:{"dtype":%q,"shape":[`, string(t.DType))
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, d)
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, off+size)
		off += size
	}
	b.WriteByte('}')
	// Padding to 8 bytes keeps the data section aligned for memory-mapping readers.
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), names, nil
}

// checkTensor rejects a tensor whose dtype, data type and shape disagree.
func checkTensor(name string, t *Tensor) error {
	if name == metadataKey {
		return fmt.Errorf("tensor name %q is reserved for metadata", name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("tensor name %q is not valid UTF-8", name)
	}
	if t == nil {
		return fmt.Errorf("tensor %q is nil", name)
	}
	if t.DType.Size() == 0 {
		return fmt.Errorf("tensor %q: unsupported dtype %q (supported: %s)", name, t.DType, supportedDTypes)
	}
	if got := fmt.Sprintf("%T", t.Data); got != t.DType.goType() {
		return fmt.Errorf("tensor %q: dtype %s needs %s data, got %s", name, t.DType, t.DType.goType(), got)
	}
	shape := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int64(d)
	}
	numel, err := numElements(shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	if numel != int64(t.dataLen()) {
		return fmt.Errorf("tensor %q: data has %d elements but shape %v needs %d", name, t.dataLen(), t.Shape, numel)
	}
	return nil
}

func writeSafetensors(w io.Writer, hdr []byte, names []string, tensors map[string]*Tensor) error {
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(hdr)))
	if _, err := w.Write(prefix[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, name := range names {
		if err := writeTensorData(w, tensors[name]); err != nil {
			return err
		}
	}
	return nil
}

// writeTensorData writes the elements little-endian; checkTensor has matched Data to DType.
func writeTensorData(w io.Writer, t *Tensor) error {
	switch v := t.Data.(type) {
	case []float32:
		if t.DType == F16 || t.DType == BF16 {
			buf := make([]byte, 2*min(len(v), chunkElems))
			for i := 0; i < len(v); i += chunkElems {
				c := v[i:min(len(v), i+chunkElems)]
				encodeHalf(buf, c, t.DType)
				if _, err := w.Write(buf[:2*len(c)]); err != nil {
					return err
				}
			}
			return nil
		}
		return writeLE(w, asBytes(v), 4)
	case []float64:
		return writeLE(w, asBytes(v), 8)
	case []int64:
		return writeLE(w, asBytes(v), 8)
	case []int32:
		return writeLE(w, asBytes(v), 4)
	case []uint8:
		_, err := w.Write(v)
		return err
	case []bool:
		buf := make([]byte, min(len(v), chunkElems))
		for i := 0; i < len(v); i += chunkElems {
			c := v[i:min(len(v), i+chunkElems)]
			for j, x := range c {
				buf[j] = 0
				if x {
					buf[j] = 1
				}
			}
			if _, err := w.Write(buf[:len(c)]); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported data %T", t.Data) // unreachable after checkTensor
}

// writeLE writes native-order words little-endian, copying only on big-endian hosts.
func writeLE(w io.Writer, b []byte, size int) error {
	if nativeLE {
		_, err := w.Write(b)
		return err
	}
	buf := make([]byte, min(len(b), chunkElems*size))
	for i := 0; i < len(b); i += len(buf) {
		c := buf[:copy(buf, b[i:])]
		swapBytes(c, size)
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	return nil
}
