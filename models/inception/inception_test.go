package inception

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

var (
	netOnce sync.Once
	testNet *Net
	netErr  error
)

// goldenNet loads the formula weights through the public loader, as a user's file would be.
func goldenNet(t testing.TB) *Net {
	t.Helper()
	path := formulaWeightsFile(t)
	netOnce.Do(func() {
		b, err := engine.New("")
		if err != nil {
			netErr = err
			return
		}
		testNet, netErr = Load(b, path)
	})
	if netErr != nil {
		t.Fatal(netErr)
	}
	return testNet
}

func goldenImages(t testing.TB, name string) ([]uint8, int, int, int) {
	t.Helper()
	in := golden.Open(t, "inception/inputs.safetensors")
	x, err := in.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	pix, ok := x.Data.([]uint8)
	if !ok || len(x.Shape) != 4 || x.Shape[3] != 3 {
		t.Fatalf("%s: %s %v, want U8 [N, H, W, 3]", name, x.DType, x.Shape)
	}
	return pix, x.Shape[0], x.Shape[1], x.Shape[2]
}

// TestGoldenForward checks every output and trace against pytorch-fid at both input sizes
// (64×64 goes through the upsampling resize, 299×299 through the identity), and that a second
// batch size gives bit-identical results.
func TestGoldenForward(t *testing.T) {
	net := goldenNet(t)
	for _, c := range []struct {
		input, forward string
		batch          int
	}{
		{"images_64", "inception/forward_64.safetensors", 4},
		{"images_299", "inception/forward_299.safetensors", 3}, // a batch of 3 and a batch of 1
	} {
		t.Run(c.input, func(t *testing.T) {
			pix, n, h, w := goldenImages(t, c.input)
			want := golden.Open(t, c.forward)
			if _, ok := want.Tensors["model_input_first_image"]; ok {
				x, err := Preprocess(pix[:h*w*3], 1, h, w)
				if err != nil {
					t.Fatal(err)
				}
				e := golden.MaxAbs(x, golden.F32(t, want, "model_input_first_image"))
				t.Logf("model_input_first_image: max abs error %.3g", e)
				if e > 1e-5 {
					t.Errorf("model_input_first_image: max abs error %.3g > 1e-5", e)
				}
			}
			got, err := net.Extract(pix, n, h, w, Options{BatchSize: c.batch, Mixed6Conv: true, Trace: true})
			if err != nil {
				t.Fatal(err)
			}
			check := func(name string, g []float32) float64 {
				e := golden.RelToMax(g, golden.F32(t, want, name))
				if e > 1e-5 {
					t.Errorf("%s: max|got−golden|/max|golden| = %.3g > 1e-5", name, e)
				}
				return e
			}
			for _, o := range []struct {
				name string
				v    []float32
			}{{"pool3", got.Pool3}, {"logits", got.Logits}, {"logits_unbiased", got.LogitsUnbiased},
				{"spatial_features", got.Spatial}, {"mixed_6_conv", got.Mixed6Conv}} {
				t.Logf("%-17s rel-to-max error %.3g", o.name, check(o.name, o.v))
			}
			var worst float64
			worstName := ""
			for _, name := range slices.Sorted(maps.Keys(got.Traces)) {
				if _, ok := want.Tensors[name]; !ok {
					t.Errorf("golden has no %s", name)
					continue
				}
				if e := check(name, got.Traces[name]); e > worst {
					worst, worstName = e, name
				}
			}
			t.Logf("%d traces: worst rel-to-max error %.3g (%s)", len(got.Traces), worst, worstName)
			var goldenTraces int
			for name := range want.Tensors {
				if strings.HasPrefix(name, "trace.") || strings.HasSuffix(name, "_mean") {
					goldenTraces++
				}
			}
			if goldenTraces != len(got.Traces) {
				t.Errorf("golden has %d traces, the net gives %d", goldenTraces, len(got.Traces))
			}
			if c.input != "images_64" {
				return
			}
			// Neither the batch size nor the extra outputs may change a single bit: the pure-Go
			// backend accumulates every dot product in the same order whatever the number of rows.
			// Images 2 and 3 again, one per batch, through the graph users run (no traces).
			per := h * w * 3
			plain, err := net.Extract(pix[2*per:], 2, h, w, Options{BatchSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			if plain.Traces != nil || plain.Mixed6Conv != nil {
				t.Errorf("Features returned traces or mixed_6_conv without being asked")
			}
			for _, o := range []struct {
				name  string
				a, b  []float32
				width int
			}{{"pool3", got.Pool3, plain.Pool3, Pool3Dim}, {"logits", got.Logits, plain.Logits, NumLogits},
				{"logits_unbiased", got.LogitsUnbiased, plain.LogitsUnbiased, NumLogits}, {"spatial", got.Spatial, plain.Spatial, SpatialDim}} {
				if i := firstBitDiff(o.a[2*o.width:], o.b); i >= 0 {
					t.Errorf("%s: batch of 4 (with traces) and batch of 1 differ at [%d]: %v vs %v", o.name, 2*o.width+i, o.a[2*o.width+i], o.b[i])
				}
			}
		})
	}
}

func firstBitDiff(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func TestArchitecture(t *testing.T) {
	shapes := ExpectedShapes()
	if len(shapes) != 566-94 {
		t.Errorf("%d expected keys, want 472 (566 minus 94 num_batches_tracked)", len(shapes))
	}
	if n := len(ConvNames()); n != 94 {
		t.Errorf("%d convs, want 94", n)
	}
	var params int
	for _, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		params += n
	}
	// meta.json: 23,885,392 float elements.
	if params != 23885392 {
		t.Errorf("%d parameters, want 23885392", params)
	}
	if c := archByName["Mixed_7c.branch_pool"]; c.outH != 8 || c.inH != 8 {
		t.Errorf("Mixed_7c runs at %d×%d, want 8×8", c.inH, c.inW)
	}
	if c := archByName["Mixed_6d.branch1x1"]; c.outH != 17 || c.out != 192 {
		t.Errorf("Mixed_6d.branch1x1 gives %d channels at %d×%d, want 192 at 17×17", c.out, c.outH, c.outW)
	}
	t.Logf("%.3f GFLOP per image", float64(FLOPsPerImage())/1e9)
}

// TestWeightErrors checks that a bad state dict gives one error naming the key and shapes.
func TestWeightErrors(t *testing.T) {
	good := map[string]*checkpoint.Tensor{}
	for k, s := range ExpectedShapes() {
		n := 1
		for _, d := range s {
			n *= d
		}
		v := make([]float32, n)
		if strings.HasSuffix(k, "running_var") || strings.HasSuffix(k, "bn.weight") {
			for i := range v {
				v[i] = 1
			}
		}
		good[k] = checkpoint.NewF32(v, s...)
	}
	good["Conv2d_1a_3x3.bn.num_batches_tracked"] = checkpoint.NewI64([]int64{7})
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(b, &checkpoint.File{Path: "ok.pt", Tensors: good}); err != nil {
		t.Fatalf("a complete state dict with a counter: %v", err)
	}
	clone := func(edit func(m map[string]*checkpoint.Tensor)) *checkpoint.File {
		m := map[string]*checkpoint.Tensor{}
		for k, v := range good {
			m[k] = v
		}
		edit(m)
		return &checkpoint.File{Path: "bad.pt", Tensors: m}
	}
	for _, c := range []struct {
		name string
		file *checkpoint.File
		want []string
	}{
		{"missing", clone(func(m map[string]*checkpoint.Tensor) { delete(m, "Mixed_6d.branch1x1.bn.running_var") }),
			[]string{"bad.pt", `missing tensor "Mixed_6d.branch1x1.bn.running_var"`, "[192]"}},
		{"misshapen", clone(func(m map[string]*checkpoint.Tensor) {
			m["Mixed_7c.branch3x3_2a.conv.weight"] = checkpoint.NewF32(make([]float32, 384*384*3), 384, 384, 3, 1)
		}), []string{`tensor "Mixed_7c.branch3x3_2a.conv.weight" has shape [384, 384, 3, 1], want [384, 384, 1, 3]`}},
		{"extra", clone(func(m map[string]*checkpoint.Tensor) {
			m["AuxLogits.fc.weight"] = checkpoint.NewF32(make([]float32, 6), 2, 3)
		}),
			[]string{`unexpected tensor "AuxLogits.fc.weight" (shape [2, 3])`}},
		{"two problems", clone(func(m map[string]*checkpoint.Tensor) { delete(m, "fc.bias"); delete(m, "fc.weight") }),
			[]string{`missing tensor "fc.bias"`, `(and 1 more: missing tensor "fc.weight"`}},
		{"non-finite", clone(func(m map[string]*checkpoint.Tensor) {
			v := make([]float32, 1008)
			v[5] = float32(math.NaN())
			m["fc.bias"] = checkpoint.NewF32(v, 1008)
		}), []string{`tensor "fc.bias" holds a non-finite value`, "index 5"}},
		{"negative variance", clone(func(m map[string]*checkpoint.Tensor) {
			v := make([]float32, 32)
			v[3] = -1
			m["Conv2d_2a_3x3.bn.running_var"] = checkpoint.NewF32(v, 32)
		}), []string{`"Conv2d_2a_3x3.bn.running_var": running_var[3] = -1`}},
	} {
		_, err := New(b, c.file)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans several lines: %q", c.name, err)
		}
	}
	if _, err := Load(b, "/nonexistent/pt_inception.pth"); err == nil || !strings.Contains(err.Error(), "/nonexistent/pt_inception.pth") {
		t.Errorf("missing file: %v", err)
	}
}

// TestImageErrors checks argument validation before any compute.
func TestImageErrors(t *testing.T) {
	net := &Net{}
	for _, c := range []struct {
		pix        []uint8
		n, h, w, b int
		want       string
	}{
		{make([]uint8, 12), 1, 2, 2, 0, ""},
		{make([]uint8, 11), 1, 2, 2, 0, "11 bytes"},
		{nil, 0, 2, 2, 0, "positive count"},
		{make([]uint8, 12), 1, 0, 2, 0, "positive count and size"},
		{make([]uint8, 12), 1, 2, 2, -1, "batch size -1"},
	} {
		if c.want == "" {
			if _, err := Preprocess(c.pix, c.n, c.h, c.w); err != nil {
				t.Errorf("Preprocess(%d×%d×%d): %v", c.n, c.h, c.w, err)
			}
			continue
		}
		_, err := net.Extract(c.pix, c.n, c.h, c.w, Options{BatchSize: c.b})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Extract(%d bytes, %d×%d×%d, batch %d): error %v, want %q", len(c.pix), c.n, c.h, c.w, c.b, err, c.want)
		}
	}
}

// TestResizeTaps pins the bilinear source coordinates: identity at 299, PyTorch's clamping at 0
// and at the last pixel when upsampling.
func TestResizeTaps(t *testing.T) {
	for d, tp := range axisTaps(299, 299) {
		if tp.i0 != d || tp.l0 != 1 || tp.l1 != 0 {
			t.Fatalf("299→299 tap %d = %+v, want the identity", d, tp)
		}
	}
	up := axisTaps(2, 4) // src = (d+0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25
	want := []tap{{0, 1, 1, 0}, {0, 1, 0.75, 0.25}, {0, 1, 0.25, 0.75}, {1, 1, 0.75, 0.25}}
	for i := range want {
		if up[i] != want[i] {
			t.Errorf("2→4 tap %d = %+v, want %+v", i, up[i], want[i])
		}
	}
}
