// Package inception is pytorch-fid's FID Inception-v3 (pytorch_fid.inception.InceptionV3 with
// fid_inception_v3 weights) in GoMLX: the network behind FID (pool3), sFID (Mixed_6d's first
// seven branch1x1 channels, as the ADM evaluator takes them) and the Inception Score (logits).
//
// Images go in as uint8 RGB NHWC of any size and are preprocessed as pytorch-fid does: /255,
// bilinear resize to 299×299 (align_corners=False, no antialias), then 2x−1.
//
// The graph works in NHWC. Every convolution is an explicit im2col followed by one matrix product
// against the BatchNorm-folded kernel, because GoMLX's pure-Go backend convolves with a scalar
// single-threaded loop (4× slower than im2col + its matmul on Mixed_5b's 5×5 conv), and 1×1
// convolutions that read the same tensor are computed as one product. All of it is ordinary
// graph ops, so any backend runs it.
package inception

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/internal/gx"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// DefaultBatchSize is the number of images per forward pass when Options.BatchSize is 0.
const DefaultBatchSize = 8

// Net is the FID Inception-v3 with its (BatchNorm-folded) weights resident on a backend.
// A Net may be used from several goroutines, but forward passes run one at a time.
type Net struct {
	backend backends.Backend
	args    []any          // weight tensors in the order the graph takes them
	unit    map[string]int // conv (or fused-group head) name → index of its kernel in args (bias follows)
	fcW     int            // index of fc.weight [1008, 2048] in args (fc.bias follows)

	mu    sync.Mutex
	execs map[mode]*Exec
}

// Options steer one feature extraction.
type Options struct {
	// BatchSize is the number of images per forward pass (0 = DefaultBatchSize). It bounds the
	// memory in use (about 170 MB per image on the pure-Go backend) and, on the pure-Go backend,
	// does not change a single bit of the results: its matmul sums every dot product in the same
	// order whatever the number of rows (tested). GPU libraries may pick other kernels per shape.
	BatchSize int
	// Mixed6Conv also returns Mixed_6d.branch1x1's full output (Features.Mixed6Conv).
	Mixed6Conv bool
	// Trace also returns the spatial mean of every conv and mixed block output (Features.Traces),
	// to find the first layer that departs from a reference.
	Trace bool
	// Progress, when set, is called after each batch with the number of images done so far.
	Progress func(done, total int)
}

// Features are the network outputs for N images, each row-major with one row per image.
type Features struct {
	N              int
	Pool3          []float32 // [N, 2048] FID features
	Logits         []float32 // [N, 1008] pool3·fc.weightᵀ + fc.bias
	LogitsUnbiased []float32 // [N, 1008] pool3·fc.weightᵀ (the ADM evaluator's and torch-fidelity's IS logits)
	Spatial        []float32 // [N, 2023] sFID features: channels 0..6 of Mixed_6d.branch1x1 flattened (h, w, c)
	// Mixed6Conv is Mixed_6d.branch1x1's output [N, 192, 17, 17] (NCHW), with Options.Mixed6Conv.
	Mixed6Conv []float32
	// Traces holds [N, C] spatial means with Options.Trace, keyed as the goldens name them:
	// "trace.<conv or mixed block>" and "block0_mean" … "block2_mean".
	Traces map[string][]float32
}

// mode selects which outputs a compiled graph returns.
type mode struct{ mixed6, trace bool }

// Load reads pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth, or any safetensors or
// .pt file with the same keys) and puts the network on the backend.
func Load(b backends.Backend, path string) (*Net, error) {
	f, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	return New(b, f)
}

// CheckWeights reports every missing, misshapen or unexpected tensor of a state dict in one error
// (num_batches_tracked counters are ignored), naming the key and both shapes.
func CheckWeights(f *checkpoint.File) error {
	if err := checkpoint.CheckShapes(f.Path, f.Tensors, ExpectedShapes(), "pytorch-fid's FID Inception-v3", isCounter); err != nil {
		return fmt.Errorf("inception: %w", err)
	}
	return nil
}

// isCounter tells BatchNorm's training step counters, which inference never reads.
func isCounter(key string) bool {
	const suffix = ".num_batches_tracked"
	return len(key) > len(suffix) && key[len(key)-len(suffix):] == suffix
}

// New checks a state dict, folds each BatchNorm into its convolution and puts the weights on
// the backend.
func New(b backends.Backend, f *checkpoint.File) (*Net, error) {
	if b == nil {
		return nil, fmt.Errorf("inception: no backend")
	}
	if err := CheckWeights(f); err != nil {
		return nil, err
	}
	get := func(key string) ([]float32, error) {
		v, err := f.Tensors[key].Float32()
		if err != nil {
			return nil, fmt.Errorf("inception: %s: tensor %q: %w", f.Path, key, err)
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("inception: %s: tensor %q holds a non-finite value (%v) at flat index %d", f.Path, key, x, i)
			}
		}
		return v, nil
	}
	n := &Net{backend: b, unit: map[string]int{}, execs: map[mode]*Exec{}}
	for _, head := range archConvs {
		if head.fusedWith != "" && head.fusedWith != head.name {
			continue
		}
		members := []*conv{head}
		width := head.out
		if head.fusedWith != "" {
			members, width = nil, head.fusedN
			for _, c := range archConvs {
				if c.fusedWith == head.name {
					members = append(members, c)
				}
			}
		}
		K := head.kh * head.kw * head.in
		w := make([]float32, width*K)
		bias := make([]float32, width)
		for _, c := range members {
			if err := foldConv(get, c, w[c.fusedCol*K:(c.fusedCol+c.out)*K], bias[c.fusedCol:c.fusedCol+c.out]); err != nil {
				return nil, fmt.Errorf("inception: %s: %w", f.Path, err)
			}
		}
		n.unit[head.name] = len(n.args)
		n.args = append(n.args, tensors.FromFlatDataAndDimensions(w, width, K), tensors.FromFlatDataAndDimensions(bias, width))
	}
	fcW, err := get("fc.weight")
	if err != nil {
		return nil, err
	}
	fcB, err := get("fc.bias")
	if err != nil {
		return nil, err
	}
	n.fcW = len(n.args)
	n.args = append(n.args, tensors.FromFlatDataAndDimensions(fcW, NumLogits, Pool3Dim), tensors.FromFlatDataAndDimensions(fcB, NumLogits))
	return n, nil
}

// foldConv writes conv c's kernel with its BatchNorm folded in, as rows [out, (ky, kx, in)] to
// match the im2col column order, and the folded bias. Folding is done in float64 and rounded once.
func foldConv(get func(string) ([]float32, error), c *conv, w, bias []float32) error {
	var v [5][]float32
	for i, s := range []string{"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"} {
		var err error
		if v[i], err = get(c.name + "." + s); err != nil {
			return err
		}
	}
	kw, gamma, beta, mean, variance := v[0], v[1], v[2], v[3], v[4]
	K := c.kh * c.kw * c.in
	for o := range c.out {
		den := float64(variance[o]) + BNEps
		if !(den > 0) {
			return fmt.Errorf("tensor %q: running_var[%d] = %v, want > -%g", c.name+".bn.running_var", o, variance[o], BNEps)
		}
		s := float64(gamma[o]) / math.Sqrt(den)
		bias[o] = float32(float64(beta[o]) - float64(float64(mean[o])*s))
		for ci := range c.in {
			for ky := range c.kh {
				for kx := range c.kw {
					src := ((o*c.in+ci)*c.kh+ky)*c.kw + kx
					w[o*K+(ky*c.kw+kx)*c.in+ci] = float32(float64(kw[src]) * s)
				}
			}
		}
	}
	return nil
}

// Features runs the network on count uint8 RGB images of h×w pixels laid out NHWC, in batches of
// DefaultBatchSize.
func (n *Net) Features(images []uint8, count, h, w int) (*Features, error) {
	return n.Extract(images, count, h, w, Options{})
}

// Extract runs the network on count uint8 RGB images of h×w pixels laid out NHWC, batch by batch.
func (n *Net) Extract(images []uint8, count, h, w int, opt Options) (*Features, error) {
	if err := checkImages(images, count, h, w); err != nil {
		return nil, err
	}
	bs := opt.BatchSize
	if bs == 0 {
		bs = DefaultBatchSize
	}
	if bs < 0 {
		return nil, fmt.Errorf("inception: batch size %d, want ≥ 1 (or 0 for %d)", bs, DefaultBatchSize)
	}
	md := mode{mixed6: opt.Mixed6Conv, trace: opt.Trace}
	out := &Features{N: count,
		Pool3:          make([]float32, count*Pool3Dim),
		Logits:         make([]float32, count*NumLogits),
		LogitsUnbiased: make([]float32, count*NumLogits),
		Spatial:        make([]float32, count*SpatialDim),
	}
	if md.mixed6 {
		out.Mixed6Conv = make([]float32, count*mixed6Size)
	}
	var names []string
	var widths []int
	if md.trace {
		names, widths = traceOutputs()
		out.Traces = make(map[string][]float32, len(names))
		for i, name := range names {
			out.Traces[name] = make([]float32, count*widths[i])
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	per := h * w * 3
	for start := 0; start < count; start += bs {
		m := min(bs, count-start)
		err := gx.Catch(func() {
			x := tensors.FromShape(shapes.Make(dtypes.Float32, m, InputSize, InputSize, 3))
			tensors.MustMutableFlatData(x, func(flat []float32) {
				preprocess(flat, images[start*per:(start+m)*per], m, h, w)
			})
			outs := n.exec(md).MustExec(append([]any{x}, n.args...)...)
			x.MustFinalizeAll()
			take := func(dst []float32, width int) {
				t := outs[0]
				outs = outs[1:]
				copy(dst[start*width:(start+m)*width], tensors.MustCopyFlatData[float32](t))
				t.MustFinalizeAll()
			}
			take(out.Pool3, Pool3Dim)
			take(out.Logits, NumLogits)
			take(out.LogitsUnbiased, NumLogits)
			take(out.Spatial, SpatialDim)
			if md.mixed6 {
				take(out.Mixed6Conv, mixed6Size)
			}
			for i, name := range names {
				take(out.Traces[name], widths[i])
			}
		})
		if err != nil {
			return nil, fmt.Errorf("inception: images %d..%d: %w", start, start+m-1, err)
		}
		if opt.Progress != nil {
			opt.Progress(start+m, count)
		}
	}
	return out, nil
}

// mixed6Size is the number of values of Mixed_6d.branch1x1's output per image.
const mixed6Size = 192 * 17 * 17

// checkImages validates an image batch before any work, so bad sizes are errors, not panics.
func checkImages(images []uint8, count, h, w int) error {
	if count <= 0 || h <= 0 || w <= 0 {
		return fmt.Errorf("inception: %d images of %d×%d pixels, want a positive count and size", count, h, w)
	}
	if h > 1<<16 || w > 1<<16 || int64(count)*int64(h)*int64(w)*3 != int64(len(images)) {
		return fmt.Errorf("inception: %d bytes of pixels, want %d images × %d × %d × 3 (uint8 RGB, NHWC)", len(images), count, h, w)
	}
	return nil
}

// Preprocess returns pytorch-fid's model input for count uint8 RGB NHWC images: [count, 3, 299,
// 299] float32 NCHW, resized bilinearly with half-pixel centres and scaled to [−1, 1].
func Preprocess(images []uint8, count, h, w int) ([]float32, error) {
	if err := checkImages(images, count, h, w); err != nil {
		return nil, err
	}
	const hw = InputSize * InputSize
	nhwc := make([]float32, count*hw*3)
	preprocess(nhwc, images, count, h, w)
	nchw := make([]float32, len(nhwc))
	for i := range count {
		for p := range hw {
			for c := range 3 {
				nchw[(i*3+c)*hw+p] = nhwc[(i*hw+p)*3+c]
			}
		}
	}
	return nchw, nil
}

// tap is one output coordinate's two source pixels and weights along one axis.
type tap struct {
	i0, i1 int
	l0, l1 float32
}

// axisTaps gives PyTorch's bilinear source pixels and weights with align_corners=False:
// src = (dst+0.5)·in/out − 0.5, clamped at 0; the upper neighbour is clamped at in−1.
// PyTorch computes src in float32, which near src ≈ 60 is off by up to 2e-6; the golden could
// not be matched bit for bit by any float32 variant tried, and float64 taps land closer to it
// (max 1.7e-6 against 3.6e-6 on the 64→299 golden), so src is computed in float64.
func axisTaps(in, out int) []tap {
	scale := float64(in) / float64(out)
	t := make([]tap, out)
	for d := range out {
		src := max(scale*(float64(d)+0.5)-0.5, 0)
		i0 := int(src)
		i1 := i0
		if i0 < in-1 {
			i1 = i0 + 1
		}
		l1 := src - float64(i0)
		t[d] = tap{i0: i0, i1: i1, l0: float32(1 - l1), l1: float32(l1)}
	}
	return t
}

// preprocess writes count images (uint8 NHWC, h×w) into dst as the 299×299 NHWC model input,
// spreading images over the available cores.
func preprocess(dst []float32, images []uint8, count, h, w int) {
	var unit [256]float32
	for i := range unit {
		unit[i] = float32(i) / 255 // ToTensor's division, in float32
	}
	ty, tx := axisTaps(h, InputSize), axisTaps(w, InputSize)
	per, out := h*w*3, InputSize*InputSize*3
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			resize(dst[i*out:(i+1)*out], images[i*per:(i+1)*per], w, ty, tx, &unit)
		}()
	}
	wg.Wait()
}

func resize(dst []float32, img []uint8, w int, ty, tx []tap, unit *[256]float32) {
	stride := w * 3
	o := 0
	for _, y := range ty {
		r0, r1 := img[y.i0*stride:], img[y.i1*stride:]
		for _, x := range tx {
			a, b := x.i0*3, x.i1*3
			for c := range 3 {
				top := float32(x.l0*unit[r0[a+c]]) + float32(x.l1*unit[r0[b+c]])
				bot := float32(x.l0*unit[r1[a+c]]) + float32(x.l1*unit[r1[b+c]])
				v := float32(y.l0*top) + float32(y.l1*bot)
				dst[o] = 2*v - 1
				o++
			}
		}
	}
}

// exec returns the compiled-graph family for a set of outputs, creating it once.
func (n *Net) exec(md mode) *Exec {
	if e, ok := n.execs[md]; ok {
		return e
	}
	e := MustNewExec(n.backend, func(in []*Node) []*Node { return n.graph(in, md) }).
		WithName(fmt.Sprintf("inception/mixed6=%t/trace=%t", md.mixed6, md.trace))
	// One graph per batch size (full batches and the last partial one), per output set.
	e.SetMaxCache(-1)
	n.execs[md] = e
	return e
}
