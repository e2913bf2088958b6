// Package fmnist is the small Fashion-MNIST CNN (fmnist_cnn_v1, trained by
// tools/train_classifier.py) in GoMLX: its 128-d penultimate features define FID-FMNIST and its
// logits give the class accuracy and the Inception-Score-like IS-FMNIST of the embedded default.
//
// The network, as assets/fmnist_classifier.json lists it, on [N, 1, 32, 32] inputs in [−1, 1]:
//
//	conv1 3×3 1→16 pad 1, ReLU, max pool 2 → [16, 16, 16]
//	conv2 3×3 16→32 pad 1, ReLU, max pool 2 → [32, 8, 8]
//	conv3 3×3 32→64 pad 1, ReLU, max pool 2 → [64, 4, 4]
//	flatten (NCHW order) → 1024, fc1 → 128 = the features (before fc1's ReLU)
//	ReLU, (dropout: identity at inference), fc2 → 10 logits
//
// The graph works in NHWC like models/inception, with each convolution as im2col and one matrix
// product (GoMLX's pure-Go convolution is a scalar loop). fc1's columns are permuted once at load
// time from PyTorch's (c, h, w) flatten order to the graph's (h, w, c), so no transpose runs per
// batch; every dot product still covers the same terms, in another order, hence float32-rounding
// differences from PyTorch of a few 1e-7 relative.
package fmnist

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/internal/gx"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// Model-space geometry and output widths.
const (
	InputSize  = 32  // the model's square input side (Fashion-MNIST's 28 padded by 2)
	FeatureDim = 128 // penultimate (fc1, pre-ReLU) feature width: the FID-FMNIST features
	NumClasses = 10  // logit width
)

// BatchSize is the number of images per forward pass; a shorter last batch is padded to it so
// that one compiled graph serves every call and an image's outputs never depend on its batch.
const BatchSize = 64

// ClassNames are the Fashion-MNIST labels' names, indexed by label.
var ClassNames = [NumClasses]string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// conv is one 3×3, stride 1, padding 1 convolution of the architecture.
type conv struct {
	name    string
	in, out int
}

// convs are the three convolutions in order; each is followed by ReLU and a 2×2 max pool.
var convs = []conv{{"conv1", 1, 16}, {"conv2", 16, 32}, {"conv3", 32, 64}}

// poolSide is the spatial side after the last pool; flattenDim is fc1's input width.
const (
	poolSide   = InputSize / 8
	flattenDim = 64 * poolSide * poolSide
)

// ExpectedShapes is the state dict the network reads, keyed as PyTorch names the tensors.
func ExpectedShapes() map[string][]int {
	m := map[string][]int{}
	for _, c := range convs {
		m[c.name+".weight"] = []int{c.out, c.in, 3, 3}
		m[c.name+".bias"] = []int{c.out}
	}
	m["fc1.weight"] = []int{FeatureDim, flattenDim}
	m["fc1.bias"] = []int{FeatureDim}
	m["fc2.weight"] = []int{NumClasses, FeatureDim}
	m["fc2.bias"] = []int{NumClasses}
	return m
}

// Net is the classifier with its weights resident on a backend. A Net may be used from several
// goroutines, but forward passes run one at a time.
type Net struct {
	backend backends.Backend
	args    []any // conv1..3 kernel [out, 9·in] and bias, fc1 [128, 1024] (h, w, c columns) and bias, fc2 and bias

	mu   sync.Mutex
	exec *Exec
}

// Output holds the network's outputs for N images, row-major with one row per image.
type Output struct {
	N          int
	Features   []float32 // [N, FeatureDim] penultimate features (fc1 before its ReLU)
	FeatureDim int
	Logits     []float32 // [N, NumClasses]
}

// Load reads the classifier's weights (tools/train_classifier.py's fmnist_classifier.safetensors,
// or any checkpoint with the same keys) and puts the network on the backend.
func Load(b backends.Backend, path string) (*Net, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	return New(b, f)
}

// CheckWeights reports every missing, misshapen or unexpected tensor of a state dict in one
// error, naming the key and both shapes.
func CheckWeights(f *checkpoint.File) error {
	if err := checkpoint.CheckShapes(f.Path, f.Tensors, ExpectedShapes(), "the Fashion-MNIST classifier fmnist_cnn_v1", nil); err != nil {
		return fmt.Errorf("fmnist: %w", err)
	}
	return nil
}

// New checks a state dict, reorders the weights for the NHWC graph and puts them on the backend.
func New(b backends.Backend, f *checkpoint.File) (*Net, error) {
	if b == nil {
		return nil, fmt.Errorf("fmnist: no backend")
	}
	if err := CheckWeights(f); err != nil {
		return nil, err
	}
	get := func(key string) ([]float32, error) {
		v, err := f.Tensors[key].Float32()
		if err != nil {
			return nil, fmt.Errorf("fmnist: %s: tensor %q: %w", f.Path, key, err)
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("fmnist: %s: tensor %q holds a non-finite value (%v) at flat index %d", f.Path, key, x, i)
			}
		}
		return v, nil
	}
	n := &Net{backend: b}
	for _, c := range convs {
		w, err := get(c.name + ".weight")
		if err != nil {
			return nil, err
		}
		bias, err := get(c.name + ".bias")
		if err != nil {
			return nil, err
		}
		// PyTorch's [out, in, ky, kx] → rows [out, (ky, kx, in)], im2col's column order.
		K := 9 * c.in
		rows := make([]float32, c.out*K)
		for o := range c.out {
			for ci := range c.in {
				for k := range 9 {
					rows[o*K+k*c.in+ci] = w[(o*c.in+ci)*9+k]
				}
			}
		}
		n.args = append(n.args, tensors.FromFlatDataAndDimensions(rows, c.out, K), tensors.FromFlatDataAndDimensions(slices.Clone(bias), c.out))
	}
	fc1, err := get("fc1.weight")
	if err != nil {
		return nil, err
	}
	// Column c·16 + h·4 + w (PyTorch's NCHW flatten) → (h·4 + w)·64 + c (the NHWC graph's).
	const C, S = 64, poolSide * poolSide
	perm := make([]float32, len(fc1))
	for o := range FeatureDim {
		for c := range C {
			for s := range S {
				perm[o*flattenDim+s*C+c] = fc1[o*flattenDim+c*S+s]
			}
		}
	}
	n.args = append(n.args, tensors.FromFlatDataAndDimensions(perm, FeatureDim, flattenDim))
	for _, k := range []string{"fc1.bias", "fc2.weight", "fc2.bias"} {
		v, err := get(k)
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, tensors.FromFlatDataAndDimensions(slices.Clone(v), f.Tensors[k].Shape...))
	}
	return n, nil
}

// Run classifies count images already in model space: [count, 1, 32, 32] float32 (NCHW, which
// for one channel is also NHWC) with values in [−1, 1]. Values are clipped to [−1, 1] first, as
// the training script prescribes for DiT samples, so ±Inf become ±1; NaN is an error because it
// has no place to clip to.
func (n *Net) Run(x []float32, count int) (*Output, error) {
	return n.run(x, count, nil)
}

// run is Run with a progress callback called after each batch.
func (n *Net) run(x []float32, count int, progress func(done, total int)) (*Output, error) {
	const per = InputSize * InputSize
	if count <= 0 || int64(count)*per != int64(len(x)) {
		return nil, fmt.Errorf("fmnist: %d input values for %d images, want count ≥ 1 images × 1 × %d × %d", len(x), count, InputSize, InputSize)
	}
	for i, v := range x {
		if v != v {
			return nil, fmt.Errorf("fmnist: input value %d (image %d) is NaN", i, i/per)
		}
	}
	out := &Output{N: count, FeatureDim: FeatureDim,
		Features: make([]float32, count*FeatureDim), Logits: make([]float32, count*NumClasses)}
	n.mu.Lock()
	defer n.mu.Unlock()
	for start := 0; start < count; start += BatchSize {
		m := min(BatchSize, count-start)
		err := gx.Catch(func() {
			in := tensors.FromShape(shapes.Make(dtypes.Float32, BatchSize, InputSize, InputSize, 1))
			tensors.MustMutableFlatData(in, func(flat []float32) {
				for i, v := range x[start*per : (start+m)*per] {
					flat[i] = min(max(v, -1), 1)
				}
				for i := m * per; i < len(flat); i++ {
					flat[i] = -1 // padding rows: background, discarded below
				}
			})
			outs := n.executable().MustExec(append([]any{in}, n.args...)...)
			in.MustFinalizeAll()
			feats := tensors.MustCopyFlatData[float32](outs[0])
			logits := tensors.MustCopyFlatData[float32](outs[1])
			for _, t := range outs {
				t.MustFinalizeAll()
			}
			copy(out.Features[start*FeatureDim:], feats[:m*FeatureDim])
			copy(out.Logits[start*NumClasses:], logits[:m*NumClasses])
		})
		if err != nil {
			return nil, fmt.Errorf("fmnist: images %d..%d: %w", start, start+m-1, err)
		}
		if progress != nil {
			progress(start+m, count)
		}
	}
	return out, nil
}

// executable compiles the forward pass once (n.mu held).
func (n *Net) executable() *Exec {
	if n.exec == nil {
		n.exec = MustNewExec(n.backend, n.graph).WithName("fmnist_cnn_v1")
	}
	return n.exec
}

// graph is the forward pass: in[0] is [N, 32, 32, 1], the rest the weights in Net.args order.
// Outputs: features [N, 128] and logits [N, 10].
func (n *Net) graph(in []*Node) []*Node {
	x, p := in[0], in[1:]
	for i := range convs {
		w, b := p[2*i], p[2*i+1]
		y := DotGeneral(gx.Im2Col3(x, 1), []int{3}, nil, w, []int{1}, nil)
		out := w.Shape().Dimensions[0]
		y = MaxScalar(Add(y, Reshape(b, 1, 1, 1, out)), 0)
		x = maxPool2(y)
	}
	N := x.Shape().Dimensions[0]
	x = Reshape(x, N, flattenDim)
	fc1W, fc1B, fc2W, fc2B := p[6], p[7], p[8], p[9]
	feats := Add(DotGeneral(x, []int{1}, nil, fc1W, []int{1}, nil), Reshape(fc1B, 1, FeatureDim))
	h := MaxScalar(feats, 0)
	logits := Add(DotGeneral(h, []int{1}, nil, fc2W, []int{1}, nil), Reshape(fc2B, 1, NumClasses))
	return []*Node{feats, logits}
}

// maxPool2 is the 2×2, stride 2 max pool, as strided slices (the pure-Go backend's ReduceWindow
// is slow); max is exact, so this equals PyTorch's pool bit for bit.
func maxPool2(x *Node) *Node {
	for _, axis := range []int{1, 2} {
		n := x.Shape().Dimensions[axis]
		a := SliceAxis(x, axis, AxisRange(0, n).Stride(2))
		b := SliceAxis(x, axis, AxisRange(1, n).Stride(2))
		x = Max(a, b)
	}
	return x
}
