package metrics

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// RefKey identifies reference statistics: the same images through the same extractor, weights,
// resolution and resize policy give the same statistics, so they are computed once.
type RefKey struct {
	ImagesSHA256 string `json:"images_sha256"` // ImageSetHash of the pixels
	Resolution   string `json:"resolution"`    // e.g. "64x64"
	Resize       string `json:"resize"`        // e.g. "bilinear-299 (pytorch-fid)"
	Extractor    string `json:"extractor"`     // Extractor.ID(): network and weights hash
}

// ImageSetHash is the sha256 of an image set's dimensions and pixels (file names and encodings
// do not matter; pixel order does).
func ImageSetHash(pix []uint8, n, h, w, c int) string {
	hs := sha256.New()
	var dims [32]byte
	for i, v := range []int{n, h, w, c} {
		binary.LittleEndian.PutUint64(dims[8*i:], uint64(v))
	}
	hs.Write(dims[:])
	hs.Write(pix)
	return hex.EncodeToString(hs.Sum(nil))
}

// ID is the key's hash, used as the cached file's name.
func (k RefKey) ID() string {
	data, _ := json.Marshal(k)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:32]
}

// RefCache stores reference statistics as .npz files (with a JSON sidecar naming the key) in a
// folder.
type RefCache struct{ Dir string }

// DefaultRefCache is $CACHEBENCH_CACHE/refstats, or the user cache folder's cachebench/refstats.
func DefaultRefCache() RefCache {
	if d := os.Getenv("CACHEBENCH_CACHE"); d != "" {
		return RefCache{Dir: filepath.Join(d, "refstats")}
	}
	if d, err := os.UserCacheDir(); err == nil {
		return RefCache{Dir: filepath.Join(d, "cachebench", "refstats")}
	}
	return RefCache{Dir: filepath.Join(os.TempDir(), "cachebench-refstats")}
}

// Path is where the statistics of a key are stored.
func (c RefCache) Path(k RefKey) string { return filepath.Join(c.Dir, k.ID()+".npz") }

// Get returns the cached statistics of a key, or nil when there are none.
func (c RefCache) Get(k RefKey) (*RefStats, error) {
	p := c.Path(k)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	rs, err := ReadRefStats(p)
	if err != nil {
		return nil, fmt.Errorf("cached reference statistics (delete the file to recompute): %w", err)
	}
	return rs, nil
}

// Put stores statistics under a key.
func (c RefCache) Put(k RefKey, rs *RefStats) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	if err := WriteRefStats(c.Path(k), rs); err != nil {
		return err
	}
	meta, _ := json.MarshalIndent(k, "", " ")
	return os.WriteFile(filepath.Join(c.Dir, k.ID()+".json"), meta, 0o644)
}
