package clip

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

// Preprocess must reproduce Pillow's bicubic resize and torchvision's sizing and crop exactly
// (testdata/clip/preprocess.safetensors, made by gen_preprocess.py with Pillow 9.4).
func TestPreprocessMatchesPillow(t *testing.T) {
	g := golden.Open(t, "clip/preprocess.safetensors")
	for i := 0; ; i++ {
		in, ok := g.Tensors[fmt.Sprintf("case%d.input", i)]
		if !ok {
			if i == 0 {
				t.Fatal("no cases")
			}
			break
		}
		want := g.Tensors[fmt.Sprintf("case%d.output", i)].Data.([]uint8)
		h, w := in.Shape[0], in.Shape[1]
		for _, vr := range []ValueRange{RangeUint8, RangeUnitRescaled} {
			got, err := Preprocess(in.Data.([]uint8), 1, h, w, 32, vr)
			if err != nil {
				t.Fatal(err)
			}
			div := float32(1)
			if vr == RangeUnitRescaled {
				div = 255
			}
			bad := 0
			for c := range 3 {
				for p := range 32 * 32 {
					ref := (float32(want[p*3+c])/255/div - Mean[c]) / Std[c]
					if got[c*32*32+p] != ref {
						bad++
					}
				}
			}
			if bad > 0 {
				t.Errorf("case %d (%d×%d, %s): %d of %d values differ from Pillow", i, h, w, vr, bad, 3*32*32)
			}
		}
	}
}

func TestPreprocessBatchAndErrors(t *testing.T) {
	g := golden.Open(t, "clip/preprocess.safetensors")
	in := g.Tensors["case0.input"]
	one, err := Preprocess(in.Data.([]uint8), 1, 37, 53, 32, RangeUint8)
	if err != nil {
		t.Fatal(err)
	}
	two, err := Preprocess(append(append([]uint8{}, in.Data.([]uint8)...), in.Data.([]uint8)...), 2, 37, 53, 32, RangeUint8)
	if err != nil {
		t.Fatal(err)
	}
	if golden.MaxAbs(two[:len(one)], one) != 0 || golden.MaxAbs(two[len(one):], one) != 0 {
		t.Error("batched preprocessing differs from single images")
	}
	if _, err := Preprocess(make([]uint8, 10), 1, 2, 2, 32, RangeUint8); err == nil {
		t.Error("short buffer accepted")
	}
	if _, err := Preprocess(make([]uint8, 12), 1, 2, 2, 32, ValueRange(9)); err == nil {
		t.Error("unknown value range accepted")
	}
	for _, s := range []string{"uint8", "UNIT-RESCALED"} {
		if _, err := ParseValueRange(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseValueRange("0-1"); err == nil || !strings.Contains(err.Error(), "uint8") {
		t.Errorf("bad range: %v", err)
	}
	// A flat grey image stays flat and maps to (128/255 − mean)/std.
	grey := make([]uint8, 50*70*3)
	for i := range grey {
		grey[i] = 128
	}
	x, _ := Preprocess(grey, 1, 50, 70, 32, RangeUint8)
	for c := range 3 {
		want := (float32(128)/255 - Mean[c]) / Std[c]
		if d := math.Abs(float64(x[c*1024+517] - want)); d != 0 {
			t.Errorf("grey channel %d: %g, want %g", c, x[c*1024+517], want)
		}
	}
}

func TestScoreConventions(t *testing.T) {
	img := []float32{1, 0, 0, 1}
	txt := []float32{1, 1, 0, -1}
	s, err := Score(img, txt, 2)
	if err != nil {
		t.Fatal(err)
	}
	c := 1 / math.Sqrt2
	if math.Abs(s.Cosine[0]-c) > 1e-12 || math.Abs(s.Cosine[1]+1) > 1e-12 {
		t.Errorf("cosines %v", s.Cosine)
	}
	if s.Mean != 0 || math.Abs(s.MeanPerPairClamped-100*c/2) > 1e-9 {
		t.Errorf("mean %g (want 0: mean clamped), per-pair %g (want %g)", s.Mean, s.MeanPerPairClamped, 100*c/2)
	}
	if _, err := Score(img, txt[:2], 2); err == nil {
		t.Error("count mismatch accepted")
	}
	if _, err := Score([]float32{0, 0}, []float32{1, 0}, 2); err == nil {
		t.Error("zero feature accepted")
	}
}
