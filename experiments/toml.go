package experiments

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// reader walks a decoded TOML document key by key, so that a type error in one key does not
// hide the problems of the others, and finds the line of every key it reports on.
type reader struct {
	file  string
	md    toml.MetaData
	order map[string]int // key path → position in the file, to keep tables in file order
	probs Problems
}

// probeErr is returned by probe so that the decoder reports the key it was decoding.
var probeErr = errors.New("probe")

// probe fails on purpose: BurntSushi/toml exposes key positions only through the errors of
// its decoder, so decoding a value into a probe yields that value's line.
type probe struct{}

// UnmarshalTOML implements toml.Unmarshaler.
func (probe) UnmarshalTOML(any) error { return probeErr }

func newReader(file string, src []byte) (*reader, map[string]toml.Primitive, error) {
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(src), &top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, Problems{{File: file, Line: pe.Position.Line, Msg: "TOML syntax: " + pe.Message}}
		}
		return nil, nil, Problems{{File: file, Msg: "TOML: " + err.Error()}}
	}
	r := &reader{file: file, md: md, order: map[string]int{}}
	for i, k := range md.Keys() {
		r.order[k.String()] = i
	}
	return r, top, nil
}

// lineOf is the line of a value (0 when the decoder has none, e.g. for an implicit table).
func (r *reader) lineOf(p toml.Primitive) int {
	err := r.md.PrimitiveDecode(p, &probe{})
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Position.Line
	}
	return 0
}

// value decodes a primitive into plain Go values (int64, float64, string, bool, []any, map[string]any, time).
func (r *reader) value(p toml.Primitive) any {
	var v any
	if err := r.md.PrimitiveDecode(p, &v); err != nil {
		return nil
	}
	return v
}

func (r *reader) add(line int, field, format string, args ...any) {
	r.probs = append(r.probs, Problem{File: r.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// table is one TOML table being read: its keys in file order and which of them were read.
type table struct {
	r    *reader
	path string // dotted field name ("" for the document)
	line int
	keys []string
	vals map[string]toml.Primitive
	used map[string]bool
}

func (r *reader) newTable(path string, line int, vals map[string]toml.Primitive) *table {
	t := &table{r: r, path: path, line: line, vals: vals, used: map[string]bool{}}
	for k := range vals {
		t.keys = append(t.keys, k)
	}
	sort.SliceStable(t.keys, func(i, j int) bool {
		oi, iok := r.order[t.field(t.keys[i])]
		oj, jok := r.order[t.field(t.keys[j])]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return t.keys[i] < t.keys[j]
	})
	if t.line == 0 { // an implicit table: point at its first key
		for _, k := range t.keys {
			if l := r.lineOf(vals[k]); l > 0 && (t.line == 0 || l < t.line) {
				t.line = l
			}
		}
	}
	return t
}

// field is the dotted name of a key of the table, quoted as TOML quotes it.
func (t *table) field(k string) string {
	if t.path == "" {
		return toml.Key{k}.String()
	}
	return t.path + "." + toml.Key{k}.String()
}

func (t *table) has(k string) bool { _, ok := t.vals[k]; return ok }

func (t *table) lineOf(k string) int {
	if p, ok := t.vals[k]; ok {
		if l := t.r.lineOf(p); l > 0 {
			return l
		}
	}
	return t.line
}

func (t *table) errf(k, format string, args ...any) {
	line := t.line
	field := t.path
	if k != "" {
		line, field = t.lineOf(k), t.field(k)
	}
	t.r.add(line, field, format, args...)
}

// raw returns a key's decoded value and marks it read.
func (t *table) raw(k string) (any, bool) {
	p, ok := t.vals[k]
	if !ok {
		return nil, false
	}
	t.used[k] = true
	return t.r.value(p), true
}

// sub reads a key holding a table (nil, with a problem, when it holds something else).
func (t *table) sub(k string) *table {
	p, ok := t.vals[k]
	if !ok {
		return nil
	}
	t.used[k] = true
	var vals map[string]toml.Primitive
	raw := t.r.value(p)
	if _, isTable := raw.(map[string]any); !isTable {
		t.errf(k, "want a table, got %s", typeName(raw))
		return nil
	}
	if err := t.r.md.PrimitiveDecode(p, &vals); err != nil {
		t.errf(k, "want a table: %v", err)
		return nil
	}
	return t.r.newTable(t.field(k), t.r.lineOf(p), vals)
}

// str reads a string key ("" and false when absent or of another type).
func (t *table) str(k string) (string, bool) {
	v, ok := t.raw(k)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.errf(k, "want a string, got %s", typeName(v))
	}
	return s, ok
}

// integer reads an integer key.
func (t *table) integer(k string) (int64, bool) {
	v, ok := t.raw(k)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.errf(k, "want an integer, got %s", typeName(v))
	}
	return n, ok
}

// number reads a number key (an integer or a float).
func (t *table) number(k string) (float64, bool) {
	v, ok := t.raw(k)
	if !ok {
		return 0, false
	}
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			t.errf(k, "%v: want a finite number", n)
			return 0, false
		}
		return n, true
	}
	t.errf(k, "want a number, got %s", typeName(v))
	return 0, false
}

// boolean reads a boolean key.
func (t *table) boolean(k string) (bool, bool) {
	v, ok := t.raw(k)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		t.errf(k, "want true or false, got %s", typeName(v))
	}
	return b, ok
}

// path reads a file path key with $VAR / ${VAR} expanded; an unset variable is a problem.
func (t *table) pathValue(k string) (string, bool) {
	s, ok := t.str(k)
	if !ok {
		return "", false
	}
	var missing []string
	out := os.Expand(s, func(name string) string {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		t.errf(k, "%q uses the environment variable %s, which is not set", s, strings.Join(missing, ", "))
		return "", false
	}
	if out == "" {
		t.errf(k, "want a path, got an empty string")
		return "", false
	}
	return out, true
}

// unknown reports every key of the table that nothing read.
func (t *table) unknown(known ...string) {
	for _, k := range t.keys {
		if !t.used[k] {
			t.errf(k, "unknown key (known here: %s)", strings.Join(known, ", "))
		}
	}
}

// typeName names a decoded TOML value's type as a TOML user would.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("a %T", v)
}
