package layers

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/models/checkpoint"
)

// Loader moves a checked state dict's tensors onto the host tensors the graphs take, in order;
// the first error sticks and is returned by Err.
type Loader struct {
	f   *checkpoint.File
	err error
}

// NewLoader reads tensors from f.
func NewLoader(f *checkpoint.File) *Loader { return &Loader{f: f} }

// Err is the first error met.
func (l *Loader) Err() error { return l.err }

// Append loads keys onto dst. A key ending in "^T" is a PyTorch Linear [out, in] (or a patch
// conv [D, C, p, p], taken as a linear [D, C·p·p]) transposed to [in, out] once here, so every
// graph multiplies x·W. Non-finite values are refused with the key and index.
func (l *Loader) Append(dst *[]*tensors.Tensor, keys ...string) {
	for _, k := range keys {
		if l.err != nil {
			return
		}
		var t *tensors.Tensor
		t, l.err = l.tensor(strings.TrimSuffix(k, "^T"), strings.HasSuffix(k, "^T"))
		*dst = append(*dst, t)
	}
}

func (l *Loader) tensor(key string, transpose bool) (*tensors.Tensor, error) {
	t, ok := l.f.Tensors[key]
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %q", l.f.Path, key)
	}
	data, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", l.f.Path, key, err)
	}
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: tensor %q holds a non-finite value at flat index %d", l.f.Path, key, i)
		}
	}
	shape := t.Shape
	if transpose && len(shape) > 2 {
		shape = []int{shape[0], len(data) / shape[0]}
	}
	if transpose {
		out, in := shape[0], shape[1]
		tr := make([]float32, len(data))
		for o := range out {
			for i := range in {
				tr[i*out+o] = data[o*in+i]
			}
		}
		data, shape = tr, []int{in, out}
	}
	return tensors.FromFlatDataAndDimensions(data, shape...), nil
}
