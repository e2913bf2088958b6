package runner

import (
	"errors"
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
)

// FeatureSpec names the extractor whose features are stored with every sample, and how a
// stored vector splits into the parts metrics read: [pool | spatial | logits].
type FeatureSpec struct {
	Extractor string `json:"extractor"`         // metrics.Extractor.ID(): network and weights hash
	Pool      int    `json:"pool"`              // FID features per image (Inception pool3: 2048)
	Spatial   int    `json:"spatial,omitempty"` // sFID features per image (0: none)
	Logits    int    `json:"logits,omitempty"`  // Inception Score logits per image (0: none)
}

// Len is the length of one stored feature vector.
func (f FeatureSpec) Len() int { return f.Pool + f.Spatial + f.Logits }

// ErrLatentFeatures reports features asked of a model whose outputs are not images.
var ErrLatentFeatures = errors.New("features need 1- or 3-channel images")

// checkFeatures checks that a job's extractor and feature spec agree and suit the model.
func checkFeatures(fs *FeatureSpec, ex metrics.Extractor, spec hook.Spec) error {
	switch {
	case fs == nil && ex == nil:
		return nil
	case fs == nil || ex == nil:
		return fmt.Errorf("features: Config.Features and Job.Extractor go together (got %v and %v)", fs != nil, ex != nil)
	case fs.Extractor != ex.ID():
		return fmt.Errorf("features: the configuration names extractor %s but the job's is %s", fs.Extractor, ex.ID())
	case fs.Pool <= 0 || fs.Spatial < 0 || fs.Logits < 0:
		return fmt.Errorf("features: %+v has no pool features", *fs)
	case spec.Channels != 3 && spec.Channels != 1:
		return fmt.Errorf("%w; this model outputs %d-channel %dx%d samples (latents need a VAE decoder, which does not exist yet)",
			ErrLatentFeatures, spec.Channels, spec.Height, spec.Width)
	}
	return nil
}

// Pixels converts n samples [n, c, h, w] in [−1, 1] to uint8 NHWC with DiT's conversion
// clamp(127.5·x + 128, 0, 255), exactly the pixels WriteSample puts in the PNG.
func Pixels(x []float32, n, c, h, w int) []uint8 {
	out := make([]uint8, n*h*w*c)
	for i := range n {
		for y := range h {
			for xx := range w {
				for ch := range c {
					v := 127.5*x[((i*c+ch)*h+y)*w+xx] + 128
					out[((i*h+y)*w+xx)*c+ch] = uint8(max(0, min(255, v)))
				}
			}
		}
	}
	return out
}

// batchFeatures extracts the stored feature vector of each of the B images of a batch (nil
// without an extractor).
func batchFeatures(ex metrics.Extractor, fs *FeatureSpec, x []float32, B int, spec hook.Spec) ([][]float32, error) {
	if ex == nil {
		return nil, nil
	}
	f, err := ex.Extract(Pixels(x, B, spec.Channels, spec.Height, spec.Width), B, spec.Height, spec.Width, nil)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	if f.N != B || f.PoolDim != fs.Pool || (fs.Spatial > 0 && f.SpatialDim != fs.Spatial) || (fs.Logits > 0 && f.LogitDim != fs.Logits) {
		return nil, fmt.Errorf("features: %s returned %d images with %d/%d/%d dimensions, want %d with %d/%d/%d",
			fs.Extractor, f.N, f.PoolDim, f.SpatialDim, f.LogitDim, B, fs.Pool, fs.Spatial, fs.Logits)
	}
	out := make([][]float32, B)
	for j := range B {
		v := make([]float32, 0, fs.Len())
		v = append(v, f.Pool[j*fs.Pool:(j+1)*fs.Pool]...)
		if fs.Spatial > 0 {
			v = append(v, f.Spatial[j*fs.Spatial:(j+1)*fs.Spatial]...)
		}
		if fs.Logits > 0 {
			v = append(v, f.Logits[j*fs.Logits:(j+1)*fs.Logits]...)
		}
		out[j] = v
	}
	return out, nil
}

// UnpackFeatures gathers the stored features of samples (in index order) into metrics.Features.
func (f FeatureSpec) UnpackFeatures(samples []store.Sample) (*metrics.Features, error) {
	n := len(samples)
	out := &metrics.Features{N: n, PoolDim: f.Pool, SpatialDim: f.Spatial, LogitDim: f.Logits,
		Pool: make([]float32, 0, n*f.Pool)}
	if f.Spatial > 0 {
		out.Spatial = make([]float32, 0, n*f.Spatial)
	}
	if f.Logits > 0 {
		out.Logits = make([]float32, 0, n*f.Logits)
	}
	for _, s := range samples {
		if len(s.Features) != f.Len() {
			return nil, fmt.Errorf("sample %d has %d stored features, want %d (%s)", s.Index, len(s.Features), f.Len(), f.Extractor)
		}
		out.Pool = append(out.Pool, s.Features[:f.Pool]...)
		out.Spatial = append(out.Spatial, s.Features[f.Pool:f.Pool+f.Spatial]...)
		out.Logits = append(out.Logits, s.Features[f.Pool+f.Spatial:]...)
	}
	if f.Spatial == 0 {
		out.Spatial = nil
	}
	if f.Logits == 0 {
		out.Logits = nil
	}
	return out, nil
}
