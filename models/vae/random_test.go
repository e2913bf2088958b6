package vae

import (
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
)

// Random weights of a configuration load back as that configuration (the SD one is read off the
// shapes exactly as a real checkpoint's).
func TestRandomWeightsConfig(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	small := Config{EmbedDim: 4, ZChannels: 4, Channels: []int{32, 64}, NumResBlocks: 1, OutChannels: 3, LevelAttn: []bool{false, false}, MidAttn: true}
	for _, c := range []Config{small, SD} {
		f := RandomWeights(c, 1)
		got, _, err := InferConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != c.String() {
			t.Errorf("random weights of %s read back as %s", c, got)
		}
	}
	d, err := New(b, RandomWeights(small, 2))
	if err != nil {
		t.Fatal(err)
	}
	img, err := d.Decode(make([]float32, 4*4*4), 1)
	if err != nil || len(img) != 3*8*8 {
		t.Fatalf("decode: %v, %d values", err, len(img))
	}
}
