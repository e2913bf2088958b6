package fmnist

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// The test files are copies of tools/train_classifier.py's exports (see testdata/fmnist/README.md),
// so that retraining the shipped assets cannot silently move these tests.
const (
	weightsFile = "fmnist/fmnist_classifier.safetensors"
	goldenFile  = "fmnist/fmnist_classifier_golden.safetensors"
	archFile    = "fmnist/fmnist_classifier.json"
)

var (
	netOnce sync.Once
	testNet *Net
	netErr  error
)

func goldenNet(t testing.TB) *Net {
	t.Helper()
	netOnce.Do(func() {
		b, err := engine.New("")
		if err != nil {
			netErr = err
			return
		}
		testNet, netErr = Load(b, golden.Path(weightsFile))
	})
	if netErr != nil {
		t.Fatal(netErr)
	}
	return testNet
}

// goldenInput returns the golden model-space images [8, 1, 32, 32].
func goldenInput(t *testing.T) ([]float32, int) {
	t.Helper()
	g := golden.Open(t, goldenFile)
	x := golden.F32(t, g, "x")
	return x, len(x) / (InputSize * InputSize)
}

// TestGoldenForward checks features and logits against PyTorch (eval mode) on 8 test images.
func TestGoldenForward(t *testing.T) {
	net := goldenNet(t)
	g := golden.Open(t, goldenFile)
	x, n := goldenInput(t)
	got, err := net.Run(x, n)
	if err != nil {
		t.Fatal(err)
	}
	if got.N != n || got.FeatureDim != FeatureDim {
		t.Fatalf("output N=%d FeatureDim=%d, want %d, %d", got.N, got.FeatureDim, n, FeatureDim)
	}
	for _, c := range []struct {
		name string
		got  []float32
	}{{"features", got.Features}, {"logits", got.Logits}} {
		want := golden.F32(t, g, c.name)
		rel, abs := golden.RelToMax(c.got, want), golden.MaxAbs(c.got, want)
		t.Logf("%s: max abs error %.3g, relative to max|golden| %.3g", c.name, abs, rel)
		if rel > 1e-5 {
			t.Errorf("%s: max|got − golden| / max|golden| = %.3g > 1e-5", c.name, rel)
		}
	}
	// The predicted classes must agree too (an error budget says nothing about near-ties).
	wantLogits := golden.F32(t, g, "logits")
	for i := range n {
		a, b := argmax(got.Logits[i*NumClasses:(i+1)*NumClasses]), argmax(wantLogits[i*NumClasses:(i+1)*NumClasses])
		if a != b {
			t.Errorf("image %d: class %d (%s), PyTorch %d (%s)", i, a, ClassNames[a], b, ClassNames[b])
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestBatchIndependence checks that an image's outputs do not depend on the other images of the
// call, bit for bit (the last batch is padded to a fixed size).
func TestBatchIndependence(t *testing.T) {
	net := goldenNet(t)
	x, n := goldenInput(t)
	all, err := net.Run(x, n)
	if err != nil {
		t.Fatal(err)
	}
	const per = InputSize * InputSize
	i := 5
	one, err := net.Run(x[i*per:(i+1)*per], 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Features, all.Features[i*FeatureDim:(i+1)*FeatureDim]) || !slices.Equal(one.Logits, all.Logits[i*NumClasses:(i+1)*NumClasses]) {
		t.Errorf("image %d alone gives other outputs than in a batch of %d", i, n)
	}
	// Two batches (BatchSize + 6 images): image k is golden image k mod n.
	m := BatchSize + 6
	many := make([]float32, 0, m*per)
	for k := range m {
		many = append(many, x[(k%n)*per:(k%n+1)*per]...)
	}
	big, err := net.Run(many, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{0, BatchSize - 1, BatchSize, m - 1} {
		j := k % n
		if !slices.Equal(big.Features[k*FeatureDim:(k+1)*FeatureDim], all.Features[j*FeatureDim:(j+1)*FeatureDim]) {
			t.Errorf("image %d of %d differs from the same image in a batch of %d", k, m, n)
		}
	}
}

// TestClip checks that inputs are clipped to [−1, 1] before the network, and NaN rejected.
func TestClip(t *testing.T) {
	net := goldenNet(t)
	x, _ := goldenInput(t)
	const per = InputSize * InputSize
	wild, clipped := slices.Clone(x[:per]), slices.Clone(x[:per])
	for i, v := range wild {
		switch {
		case v <= -1:
			wild[i], clipped[i] = float32(math.Inf(-1)), -1
		case v >= 0.5:
			wild[i], clipped[i] = 7, 1
		}
	}
	a, err := net.Run(wild, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Run(clipped, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Features, b.Features) || !slices.Equal(a.Logits, b.Logits) {
		t.Errorf("out-of-range input is not clipped to [−1, 1]")
	}
	wild[17] = float32(math.NaN())
	if _, err := net.Run(wild, 1); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("NaN input: error %v, want one naming NaN", err)
	}
}

// goldenPixels recovers the uint8 28×28 images behind the golden inputs (x = v/127.5 − 1).
func goldenPixels(t *testing.T, x []float32, n int) []uint8 {
	t.Helper()
	pix := make([]uint8, n*28*28)
	for i := range n {
		for y := range 28 {
			for c := range 28 {
				v := (float64(x[(i*InputSize+y+2)*InputSize+c+2]) + 1) * 127.5
				r := math.Round(v)
				if math.Abs(v-r) > 1e-3 || r < 0 || r > 255 {
					t.Fatalf("golden image %d pixel (%d, %d) = %v is not a scaled uint8", i, y, c, v)
				}
				pix[(i*28+y)*28+c] = uint8(r)
			}
		}
	}
	return pix
}

// TestPreprocess checks that 28×28 gray, 28×28 RGB and 32×32 gray versions of the golden images
// become the golden model input bit for bit, and that FromImages gives Run's outputs.
func TestPreprocess(t *testing.T) {
	x, n := goldenInput(t)
	gray := goldenPixels(t, x, n)
	rgb := make([]uint8, 3*len(gray))
	for i, v := range gray {
		rgb[3*i], rgb[3*i+1], rgb[3*i+2] = v, v, v
	}
	gray32 := make([]uint8, n*InputSize*InputSize)
	for i := range n {
		for y := range 28 {
			copy(gray32[(i*InputSize+y+2)*InputSize+2:], gray[(i*28+y)*28:(i*28+y+1)*28])
		}
	}
	for _, c := range []struct {
		name string
		pix  []uint8
		side int
	}{{"gray28", gray, 28}, {"rgb28", rgb, 28}, {"gray32", gray32, 32}} {
		got, err := Preprocess(c.pix, n, c.side, c.side)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(got, x) {
			t.Errorf("%s: model input differs from the golden x (max abs %.3g)", c.name, golden.MaxAbs(got, x))
		}
	}
	net := goldenNet(t)
	want, err := net.Run(x, n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := net.FromImages(rgb, n, 28, 28)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Features, want.Features) || !slices.Equal(got.Logits, want.Logits) {
		t.Errorf("FromImages differs from Run on the same images")
	}
}

// TestLuminance checks the RGB reduction on a coloured pixel against PIL's convert("L").
func TestLuminance(t *testing.T) {
	pix := make([]uint8, 28*28*3)
	pix[0], pix[1], pix[2] = 200, 100, 50 // PIL: (200·19595 + 100·38470 + 50·7471 + 32768) >> 16 = 124
	x, err := Preprocess(pix, 1, 28, 28)
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(124)/127.5 - 1; x[2*InputSize+2] != want {
		t.Errorf("luminance of (200, 100, 50) → %v, want %v (124)", x[2*InputSize+2], want)
	}
}

func TestPreprocessErrors(t *testing.T) {
	for _, c := range []struct {
		pix        []uint8
		n, h, w    int
		wantSubstr string
	}{
		{make([]uint8, 10), 0, 28, 28, "positive count"},
		{make([]uint8, 64*64), 1, 64, 64, "want 28×28"},
		{make([]uint8, 28*30), 1, 28, 30, "want 28×28"},
		{make([]uint8, 28*28*2), 1, 28, 28, "bytes of pixels"},
	} {
		_, err := Preprocess(c.pix, c.n, c.h, c.w)
		if err == nil || !strings.Contains(err.Error(), c.wantSubstr) {
			t.Errorf("Preprocess(%d bytes, %d, %d, %d): error %v, want one containing %q", len(c.pix), c.n, c.h, c.w, err, c.wantSubstr)
		}
	}
	net := goldenNet(t)
	if _, err := net.Run(make([]float32, 100), 1); err == nil {
		t.Errorf("Run on 100 values: no error")
	}
}

// TestCheckWeights checks the one-error report of missing, misshapen and unexpected tensors.
func TestCheckWeights(t *testing.T) {
	f, err := checkpoint.Load(golden.Path(weightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckWeights(f); err != nil {
		t.Fatal(err)
	}
	cp := func() *checkpoint.File {
		return &checkpoint.File{Path: "w.safetensors", Tensors: maps.Clone(f.Tensors)}
	}
	missing := cp()
	delete(missing.Tensors, "conv2.bias")
	bad := cp()
	bad.Tensors["fc1.weight"] = checkpoint.NewF32(make([]float32, 128*784), 128, 784)
	extra := cp()
	extra.Tensors["fc3.weight"] = checkpoint.NewF32(make([]float32, 4), 2, 2)
	several := cp()
	delete(several.Tensors, "conv1.weight")
	several.Tensors["bn.weight"] = checkpoint.NewF32(make([]float32, 4), 4)
	for _, c := range []struct {
		name string
		f    *checkpoint.File
		want []string
	}{
		{"missing", missing, []string{"w.safetensors", `missing tensor "conv2.bias"`, "[32]"}},
		{"misshapen", bad, []string{`"fc1.weight" has shape [128, 784], want [128, 1024]`}},
		{"extra", extra, []string{`unexpected tensor "fc3.weight" (shape [2, 2])`}},
		{"several", several, []string{`missing tensor "conv1.weight"`, "and 1 more", `"bn.weight"`}},
	} {
		err := CheckWeights(c.f)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, s := range c.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, s)
			}
		}
		b, _ := engine.New("")
		if _, err := New(b, c.f); err == nil {
			t.Errorf("%s: New accepted the weights", c.name)
		}
	}
	nonFinite := cp()
	v := make([]float32, 10)
	v[3] = float32(math.Inf(1))
	nonFinite.Tensors["fc2.bias"] = checkpoint.NewF32(v, 10)
	b, _ := engine.New("")
	if _, err := New(b, nonFinite); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("non-finite weight: error %v", err)
	}
	if _, err := Load(b, "/nonexistent/fmnist.safetensors"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v, want one wrapping fs.ErrNotExist", err)
	}
}

// TestArchitectureJSON checks the Go architecture against the exported description.
func TestArchitectureJSON(t *testing.T) {
	raw, err := os.ReadFile(golden.Path(archFile))
	if err != nil {
		t.Fatal(err)
	}
	var arch struct {
		Name    string `json:"name"`
		Input   struct{ Shape []int }
		Layers  []map[string]any `json:"layers"`
		Classes []string         `json:"classes"`
		Weights map[string][]int `json:"weights"`
	}
	if err := json.Unmarshal(raw, &arch); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(arch.Weights, ExpectedShapes(), slices.Equal) {
		t.Errorf("weights: JSON %v, Go %v", arch.Weights, ExpectedShapes())
	}
	if !slices.Equal(arch.Classes, ClassNames[:]) {
		t.Errorf("classes: JSON %q, Go %q", arch.Classes, ClassNames)
	}
	if !slices.Equal(arch.Input.Shape, []int{1, InputSize, InputSize}) {
		t.Errorf("input shape %v", arch.Input.Shape)
	}
	var ops []string
	for _, l := range arch.Layers {
		op, _ := l["op"].(string)
		ops = append(ops, op)
		switch op {
		case "conv2d":
			if l["kernel"] != 3.0 || l["stride"] != 1.0 || l["padding"] != 1.0 || l["padding_mode"] != "zeros" {
				t.Errorf("conv layer %v is not the 3×3, stride 1, zero-padding 1 conv the graph implements", l)
			}
		case "maxpool2d":
			if l["kernel"] != 2.0 || l["stride"] != 2.0 || l["padding"] != 0.0 {
				t.Errorf("pool layer %v is not the 2×2 stride 2 pool the graph implements", l)
			}
		}
	}
	want := []string{"conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d",
		"flatten", "linear", "relu", "dropout", "linear"}
	if !slices.Equal(ops, want) {
		t.Errorf("layers %v, the graph implements %v", ops, want)
	}
}

// TestExtractor checks the metrics.Extractor adapter: ID from the weights' hash, and outputs.
func TestExtractor(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	path := golden.Path(weightsFile)
	e, err := NewExtractor(b, path)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := checkpoint.FileHash(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "fmnist-cnn@" + hash[:16]; e.ID() != want {
		t.Errorf("ID %q, want %q", e.ID(), want)
	}
	x, n := goldenInput(t)
	gray := goldenPixels(t, x, n)
	rgb := make([]uint8, 3*len(gray))
	for i, v := range gray {
		rgb[3*i], rgb[3*i+1], rgb[3*i+2] = v, v, v
	}
	calls := 0
	f, err := e.Extract(rgb, n, 28, 28, func(done, total int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, goldenFile)
	if f.N != n || f.PoolDim != FeatureDim || f.LogitDim != NumClasses || f.Spatial != nil || calls != 1 {
		t.Errorf("features N=%d PoolDim=%d LogitDim=%d spatial=%v progress calls=%d", f.N, f.PoolDim, f.LogitDim, f.Spatial != nil, calls)
	}
	if rel := golden.RelToMax(f.Pool, golden.F32(t, g, "features")); rel > 1e-5 {
		t.Errorf("Pool vs golden features: %.3g", rel)
	}
	if rel := golden.RelToMax(f.Logits, golden.F32(t, g, "logits")); rel > 1e-5 {
		t.Errorf("Logits vs golden logits: %.3g", rel)
	}
}

// TestRealTestImages checks, when the Debian dataset is installed, that the golden inputs are the
// first 8 test images through Preprocess, with their labels.
func TestRealTestImages(t *testing.T) {
	m, err := datasets.FashionMNIST("", "test")
	if errors.Is(err, datasets.ErrNoFashionMNIST) {
		t.Skipf("%v: install the Debian package %s (`make setup`)", err, datasets.FashionMNISTPackage)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, goldenFile)
	x, n := goldenInput(t)
	got, err := Preprocess(m.Pix[:n*28*28], n, 28, 28)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, x) {
		t.Errorf("test images 0..%d through Preprocess differ from the golden x (max abs %.3g)", n-1, golden.MaxAbs(got, x))
	}
	labels := golden.I64(t, g, "labels")
	for i := range n {
		if int64(m.Labels[i]) != labels[i] {
			t.Errorf("label %d: dataset %d, golden %d", i, m.Labels[i], labels[i])
		}
	}
}
