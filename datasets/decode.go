package datasets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"os"
	"strings"
)

// MaxImagePixels bounds the images read from files (width × height): a header that claims more
// (a corrupt or hostile file) is an error before any pixel memory is allocated, not an
// out-of-memory crash. 2^28 is a 16384×16384 image.
const MaxImagePixels = 1 << 28

// DecodeImage reads a PNG or JPEG file. With wantHash ("" = no check) it first checks the file's
// sha256 (hex) against the one a run recorded, so that a replaced image is an error, not a
// silently different metric.
func DecodeImage(path, wantHash string) (image.Image, error) {
	// One read serves the hash, the header and the pixels (sample images are small).
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	if wantHash != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != wantHash {
			return nil, fmt.Errorf("datasets: %s has sha256 %.12s…, the run recorded %.12s…: the file was replaced after sampling", path, got, wantHash)
		}
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: not a readable PNG or JPEG image: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels {
		return nil, fmt.Errorf("datasets: %s: header claims a %d×%d image; at most %d pixels are read", path, cfg.Width, cfg.Height, MaxImagePixels)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: not a readable PNG or JPEG image: %w", path, err)
	}
	return img, nil
}

// Open reads an image set named on a command line: real Fashion-MNIST images with their labels
// (fmnist:SPLIT[:N], padded to 32×32), an .npz holding images (arr_0), or a folder of PNG/JPEG
// files. Labels are nil except for Fashion-MNIST.
func Open(path string) (*Images, []uint8, error) {
	if strings.HasPrefix(path, FashionMNISTSpecPrefix) {
		return ReadFashionMNISTSet("", path)
	}
	im, err := ReadImages(path)
	return im, nil, err
}
