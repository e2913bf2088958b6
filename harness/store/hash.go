package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// ConfigHash returns the hex SHA-256 of a canonical JSON configuration, the key of the runs table.
func ConfigHash(canonicalJSON []byte) string {
	sum := sha256.Sum256(canonicalJSON)
	return hex.EncodeToString(sum[:])
}

// CanonicalJSON marshals v deterministically: compact, object keys sorted, numbers kept verbatim, no HTML escaping.
//
// v may be any value encoding/json marshals, including a json.RawMessage. Struct field order does
// not matter: the value is marshalled, decoded into generic maps (numbers as json.Number, so
// 64-bit integers keep every digit) and marshalled again, which sorts every object's keys.
func CanonicalJSON(v any) ([]byte, error) {
	first, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: canonical JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("store: canonical JSON: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil {
		return nil, fmt.Errorf("store: canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
