// Package clip is OpenAI's ViT CLIP (openai/CLIP clip/model.py) in GoMLX, with its BPE tokenizer
// and image preprocessing, for computing CLIP scores of generated images against their prompts.
//
// The network, as the reference:
//
//	image [B,3,R,R] ──conv p×p stride p, no bias──► patches [B,g²,W]
//	    [class_embedding, patches…] + positional ──ln_pre──► L × block ──ln_post(token 0)──► @ visual.proj
//	tokens [B,77] ──token_embedding + positional──► L × block (causal mask) ──ln_final──►
//	    row at argmax(tokens) (the first EOT) ──► @ text_projection
//	block: x += out_proj(MHA(ln_1(x))) with fused in_proj q,k,v; x += c_proj(QuickGELU(c_fc(ln_2(x))))
//
// LayerNorm eps is 1e-5 and QuickGELU is x·sigmoid(1.702·x). Features are returned unnormalised,
// as encode_image / encode_text return them; Score normalises. The text tower's ln_final output
// at every position (HiddenStates, TextEncoder) is what Stable Diffusion v1 conditions on.
package clip

import (
	"fmt"
	"math"
	"path/filepath"
	"sync"

	"github.com/cachebench/cachebench/internal/gx"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// DefaultBatchSize is how many images or texts one graph execution takes unless Model.BatchSize
// says otherwise; larger inputs are split so that activations stay bounded.
const DefaultBatchSize = 16

// layerNormEps is torch.nn.LayerNorm's default, which CLIP keeps.
const layerNormEps = 1e-5

// Model is a CLIP model with its weights resident on a backend.
type Model struct {
	Config
	// Source is the weights file the model was loaded from.
	Source string
	// SHA256 is the hex digest of the weights file ("" for weights built in memory).
	SHA256 string
	// BatchSize bounds the rows of one graph execution (DefaultBatchSize when ≤ 0).
	BatchSize int

	r          *runner
	w          *weights
	logitScale float32
}

// runner compiles and caches the graphs of one set of resident weights; a Model and the
// TextEncoder it hands out share one, so their compiled graphs are built once.
type runner struct {
	backend backends.Backend
	mu      sync.Mutex
	execs   map[string]*execEntry
}

func newRunner(b backends.Backend) *runner {
	return &runner{backend: b, execs: map[string]*execEntry{}}
}

// execEntry serialises runs of one compiled graph family; the Exec cache is not safe for
// concurrent first use of a new shape.
type execEntry struct {
	mu   sync.Mutex
	exec *Exec
}

// ID names the weights for run records: file name and the first 12 hex digits of its SHA-256.
func (m *Model) ID() string {
	if m.SHA256 == "" {
		return filepath.Base(m.Source)
	}
	return fmt.Sprintf("%s sha256:%s", filepath.Base(m.Source), m.SHA256[:min(12, len(m.SHA256))])
}

// LogitScale is the learned temperature (log scale) that CLIP.forward exponentiates.
func (m *Model) LogitScale() float32 { return m.logitScale }

func (m *Model) batchSize() int {
	if m.BatchSize <= 0 {
		return DefaultBatchSize
	}
	return m.BatchSize
}

// EncodePreprocessed runs the image encoder on n preprocessed images, x being [n, 3, R, R]
// (NCHW, R = ImageResolution) already normalised with CLIP's mean and std. It returns the
// features [n, EmbedDim] flattened.
func (m *Model) EncodePreprocessed(x []float32, n int) ([]float32, error) {
	r := m.ImageResolution
	if n <= 0 || len(x) != n*3*r*r {
		return nil, fmt.Errorf("clip: images have %d values, want n·3·%d·%d with n = %d > 0", len(x), r, r, n)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("clip: image values hold a non-finite value (%v) at flat index %d", v, i)
		}
	}
	out := make([]float32, 0, n*m.EmbedDim)
	per := 3 * r * r
	for start := 0; start < n; start += m.batchSize() {
		b := min(m.batchSize(), n-start)
		outs, err := m.runImages(x[start*per:(start+b)*per], b, false)
		if err != nil {
			return nil, err
		}
		out = append(out, outs[0]...)
	}
	return out, nil
}

// EncodeImages preprocesses n RGB images (NHWC uint8, h×w) as CLIP does (Preprocess) and
// returns their features [n, EmbedDim] flattened.
func (m *Model) EncodeImages(pix []uint8, n, h, w int, vr ValueRange) ([]float32, error) {
	if n <= 0 || h <= 0 || w <= 0 || len(pix) != n*h*w*3 {
		return nil, fmt.Errorf("clip: images have %d bytes, want n·h·w·3 = %d·%d·%d·3 with positive sizes", len(pix), n, h, w)
	}
	out := make([]float32, 0, n*m.EmbedDim)
	per := h * w * 3
	for start := 0; start < n; start += m.batchSize() {
		b := min(m.batchSize(), n-start)
		x, err := Preprocess(pix[start*per:(start+b)*per], b, h, w, m.ImageResolution, vr)
		if err != nil {
			return nil, err
		}
		f, err := m.EncodePreprocessed(x, b)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// EncodeText runs the text encoder on token rows (as Tokenizer.Tokenize makes them; rows shorter
// than ContextLength are padded with 0) and returns the features [len(tokens), EmbedDim].
func (m *Model) EncodeText(tokens [][]int32) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("clip: no token rows to encode")
	}
	ctx := m.ContextLength
	flat := make([]int32, len(tokens)*ctx)
	eot := make([]int32, len(tokens))
	for i, row := range tokens {
		if len(row) == 0 || len(row) > ctx {
			return nil, fmt.Errorf("clip: token row %d has %d ids, want 1 to %d", i, len(row), ctx)
		}
		for j, id := range row {
			if id < 0 || int(id) >= m.VocabSize {
				return nil, fmt.Errorf("clip: token row %d position %d: id %d outside [0, %d)", i, j, id, m.VocabSize)
			}
			// argmax takes the first maximum, i.e. the first EOT when the text holds the literal.
			if id > row[eot[i]] {
				eot[i] = int32(j)
			}
		}
		copy(flat[i*ctx:], row)
	}
	out := make([]float32, 0, len(tokens)*m.EmbedDim)
	for start := 0; start < len(tokens); start += m.batchSize() {
		b := min(m.batchSize(), len(tokens)-start)
		outs, err := m.runText(flat[start*ctx:(start+b)*ctx], eot[start:start+b], b, false)
		if err != nil {
			return nil, err
		}
		out = append(out, outs[0]...)
	}
	return out, nil
}

// Logits is CLIP.forward's logits_per_image [nImages, nTexts]: exp(logit_scale) times the cosine
// of every image with every text.
func (m *Model) Logits(imageFeats, textFeats []float32) ([]float64, error) {
	d := m.EmbedDim
	if len(imageFeats)%d != 0 || len(textFeats)%d != 0 || len(imageFeats) == 0 || len(textFeats) == 0 {
		return nil, fmt.Errorf("clip: features have %d and %d values, want positive multiples of the embedding width %d", len(imageFeats), len(textFeats), d)
	}
	ni, nt := len(imageFeats)/d, len(textFeats)/d
	scale := math.Exp(float64(m.logitScale))
	out := make([]float64, ni*nt)
	for i := range ni {
		for j := range nt {
			out[i*nt+j] = scale * cosine(imageFeats[i*d:(i+1)*d], textFeats[j*d:(j+1)*d])
		}
	}
	return out, nil
}

// runImages executes the image graph on one batch; with probe it also returns the intermediates
// (tokens, ln_pre, each block, ln_post) after the features.
func (m *Model) runImages(x []float32, b int, probe bool) ([][]float32, error) {
	r := m.ImageResolution
	key := fmt.Sprintf("image/probe=%t", probe)
	args := append([]any{tensors.FromFlatDataAndDimensions(x, b, 3, r, r)}, asArgs(m.w.vision)...)
	return m.r.run(key, func(in []*Node) []*Node { return m.imageGraph(in, probe) }, args)
}

// runText executes the text graph on one batch; with probe it also returns each block's output
// and ln_final after the features.
func (m *Model) runText(tokens, eot []int32, b int, probe bool) ([][]float32, error) {
	key := fmt.Sprintf("text/probe=%t", probe)
	args := append([]any{tensors.FromFlatDataAndDimensions(tokens, b, m.ContextLength), tensors.FromFlatDataAndDimensions(eot, b)},
		asArgs(m.w.text)...)
	return m.r.run(key, func(in []*Node) []*Node { return m.textGraph(in, probe) }, args)
}

// run compiles (once per key and shape) and executes a graph, turning GoMLX panics into errors.
func (r *runner) run(key string, fn func([]*Node) []*Node, args []any) (res [][]float32, err error) {
	r.mu.Lock()
	e, ok := r.execs[key]
	if !ok {
		e = &execEntry{}
		r.execs[key] = e
	}
	r.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	err = gx.Catch(func() {
		if e.exec == nil {
			e.exec = MustNewExec(r.backend, fn).WithName("clip/" + key)
			// Shapes vary only with the batch (at most BatchSize distinct sizes).
			e.exec.SetMaxCache(-1)
		}
		outs := e.exec.MustExec(args...)
		for _, o := range outs {
			res = append(res, tensors.MustCopyFlatData[float32](o))
			o.MustFinalizeAll()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("clip: %s graph: %w", key, err)
	}
	return res, nil
}

func asArgs(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// ---- graphs -------------------------------------------------------------------------------

// imageGraph: inputs x [B,3,R,R], then conv1, class, positional, ln_pre w/b, the blocks, ln_post
// w/b, proj.
func (m *Model) imageGraph(in []*Node, probe bool) []*Node {
	x, w := in[0], in[1:]
	conv, class, pos, preW, preB := w[0], w[1], w[2], w[3], w[4]
	blocks := w[5 : 5+12*m.VisionLayers]
	postW, postB, proj := w[5+12*m.VisionLayers], w[6+12*m.VisionLayers], w[7+12*m.VisionLayers]
	B, W, p := x.Shape().Dimensions[0], m.VisionWidth, m.PatchSize
	g2 := m.Grid() * m.Grid()

	// The stride-p convolution as one matrix product over flattened (channel, row, column) patches,
	// which SimpleGo runs much faster than its generic convolution; conv is [3·p·p, W].
	g := m.Grid()
	h := TransposeAllAxes(Reshape(x, B, 3, g, p, g, p), 0, 2, 4, 1, 3, 5) // [B, gy, gx, 3, p, p]
	h = MatMul(Reshape(h, B, g2, 3*p*p), conv)                            // patches row-major over the grid
	cls := BroadcastToDims(Reshape(class, 1, 1, W), B, 1, W)
	h = Add(Concatenate([]*Node{cls, h}, 1), InsertAxes(pos, 0))
	var outs []*Node
	if probe {
		outs = append(outs, h)
	}
	h = layerNorm(h, preW, preB)
	if probe {
		outs = append(outs, h)
	}
	for l := range m.VisionLayers {
		h = residualBlock(h, blocks[12*l:12*(l+1)], m.VisionHeads, false)
		if probe {
			outs = append(outs, h)
		}
	}
	tok0 := Reshape(Slice(h, AxisRange(), AxisElem(0), AxisRange()), B, W)
	tok0 = layerNorm(tok0, postW, postB)
	if probe {
		outs = append(outs, tok0)
	}
	return append([]*Node{MatMul(tok0, proj)}, outs...)
}

// textGraph: inputs tokens [B,ctx] int32, eot [B] int32, then the text tower's weights
// (textTower) and text_projection.
func (m *Model) textGraph(in []*Node, probe bool) []*Node {
	tokens, eot, w := in[0], in[1], in[2:]
	proj := w[len(w)-1]
	h, outs := textTower(m.Text(), tokens, w[:len(w)-1], probe)
	if probe {
		outs = append(outs, h)
	}
	B := tokens.Shape().Dimensions[0]
	rows := Stack([]*Node{Iota(h.Graph(), shapes.Make(dtypes.Int32, B), 0), eot}, -1) // (b, eot_b)
	feat := Reshape(Gather(h, rows), B, m.TextWidth)
	return append([]*Node{MatMul(feat, proj)}, outs...)
}

// textTower is the text transformer up to ln_final, the one implementation behind both the
// pooled features and the last hidden state. w holds token_embedding, positional, the blocks and
// ln_final w/b; it returns h [B,ctx,W] and, with probe, each block's output.
func textTower(c TextConfig, tokens *Node, w []*Node, probe bool) (h *Node, blocks []*Node) {
	emb, pos := w[0], w[1]
	finW, finB := w[2+12*c.Layers], w[3+12*c.Layers]
	h = Add(Gather(emb, InsertAxes(tokens, -1)), InsertAxes(pos, 0)) // [B,ctx,W]
	for l := range c.Layers {
		h = residualBlock(h, w[2+12*l:2+12*(l+1)], c.Heads, true)
		if probe {
			blocks = append(blocks, h)
		}
	}
	return layerNorm(h, finW, finB), blocks
}

// residualBlock is ResidualAttentionBlock: w holds ln_1 w/b, in_proj W/b, out_proj W/b, ln_2
// w/b, c_fc W/b, c_proj W/b (Linear weights already [in, out]).
func residualBlock(x *Node, w []*Node, heads int, causal bool) *Node {
	x = Add(x, attention(layerNorm(x, w[0], w[1]), w[2], w[3], w[4], w[5], heads, causal))
	h := linear(layerNorm(x, w[6], w[7]), w[8], w[9])
	h = Mul(h, Sigmoid(MulScalar(h, 1.702))) // QuickGELU
	return Add(x, linear(h, w[10], w[11]))
}

// attention is nn.MultiheadAttention's forward on one sequence: fused in_proj (q, k, v stacked
// in that order, heads contiguous within each), q·kᵀ/√d, optional −inf above the diagonal,
// softmax, heads concatenated, out_proj.
func attention(h, inW, inB, outW, outB *Node, heads int, causal bool) *Node {
	d := h.Shape().Dimensions
	B, N, W := d[0], d[1], d[2]
	hd := W / heads
	qkv := TransposeAllAxes(Reshape(linear(h, inW, inB), B, N, 3, heads, hd), 2, 0, 3, 1, 4) // [3,B,H,N,hd]
	parts := Split(qkv, 0, 3)
	q, k, v := Squeeze(parts[0], 0), Squeeze(parts[1], 0), Squeeze(parts[2], 0)
	q = MulScalar(q, 1/math.Sqrt(float64(hd)))
	scores := Einsum("bhqd,bhkd->bhqk", q, k)
	if causal {
		g := h.Graph()
		row := Iota(g, shapes.Make(dtypes.Int32, N, N), 0)
		col := Iota(g, shapes.Make(dtypes.Int32, N, N), 1)
		future := BroadcastToDims(Reshape(GreaterThan(col, row), 1, 1, N, N), B, heads, N, N)
		scores = Where(future, Scalar(g, scores.DType(), math.Inf(-1)), scores)
	}
	o := Einsum("bhqk,bhkd->bhqd", Softmax(scores, -1), v)
	o = Reshape(Transpose(o, 1, 2), B, N, W)
	return linear(o, outW, outB)
}

// linear is y = x·W + b with W stored [in, out].
func linear(x, w, b *Node) *Node {
	y := MatMul(x, w)
	return Add(y, ExpandLeftToRank(b, y.Rank()))
}

// layerNorm over the last axis with the biased variance, eps 1e-5 and an affine map.
func layerNorm(x, gain, bias *Node) *Node {
	xc := Sub(x, ReduceAndKeep(x, ReduceMean, -1))
	y := Mul(xc, Rsqrt(AddScalar(ReduceAndKeep(Square(xc), ReduceMean, -1), layerNormEps)))
	return Add(Mul(y, ExpandLeftToRank(gain, y.Rank())), ExpandLeftToRank(bias, y.Rank()))
}
