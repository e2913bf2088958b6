package datasets

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A PNG whose header claims 100000×100000 pixels is one error, read before any pixel memory is
// allocated (it once crashed metrics/fid/features out of memory); a file whose sha256 differs
// from the recorded one is an error too.
func TestDecodeImageBoundsAndHash(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	okPath := filepath.Join(dir, "ok.png")
	if err := os.WriteFile(okPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	if _, err := DecodeImage(okPath, hex.EncodeToString(sum[:])); err != nil {
		t.Fatalf("a good image with its hash: %v", err)
	}
	if _, err := DecodeImage(okPath, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "replaced after sampling") {
		t.Errorf("a hash mismatch: %v", err)
	}
	// IHDR starts at byte 8 (length, "IHDR", width, height, ...); patch the size and its CRC.
	big := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(big[16:], 100000)
	binary.BigEndian.PutUint32(big[20:], 100000)
	binary.BigEndian.PutUint32(big[29:], crc32.ChecksumIEEE(big[12:29]))
	bigPath := filepath.Join(dir, "big.png")
	if err := os.WriteFile(bigPath, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeImage(bigPath, ""); err == nil || !strings.Contains(err.Error(), "header claims a 100000×100000 image") {
		t.Errorf("a 100000×100000 header: %v", err)
	}
	if _, err := ReadImages(dir); err == nil || !strings.Contains(err.Error(), "100000×100000") {
		t.Errorf("a folder holding it: %v", err)
	}
}
