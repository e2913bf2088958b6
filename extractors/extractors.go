// Package extractors is the one registry of feature networks: pytorch-fid's Inception-v3 and the
// Fashion-MNIST classifier of the embedded default (CLIP, which scores text–image pairs, has its
// own command). Each kind says how its stored id is made, what input policy is recorded beside
// every metric, the layout of its stored features and which metric names it gives, and opens
// its network lazily, so a run that needs no new features never compiles it.
package extractors

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/fmnist"
	"github.com/cachebench/cachebench/models/inception"
)

// Kind is a registered feature network.
type Kind struct {
	Name       string // "inception", "fmnist"
	IDPrefix   string // a stored id is IDPrefix + the first 16 hex digits of the weights' sha256
	Resize     string // the input policy recorded with every metric
	WeightsEnv string // environment variable naming the default weights
	// Pool, Spatial and Logits are the widths of the stored features (FID, sFID, IS/accuracy).
	Pool, Spatial, Logits int
	// Metrics are the metric names the features support.
	Metrics []string
	open    func(b backends.Backend, weights string, batch int) (metrics.Extractor, error)
}

var kinds = []*Kind{
	{Name: "inception", IDPrefix: "pytorch-fid-inception-v3@", Resize: "bilinear-299 align_corners=False, x/255·2−1 (pytorch-fid)",
		WeightsEnv: "CACHEBENCH_INCEPTION", Pool: inception.Pool3Dim, Spatial: inception.SpatialDim, Logits: inception.NumLogits,
		Metrics: []string{"fid", "sfid", "is", "precision", "recall", "kid"},
		open: func(b backends.Backend, weights string, batch int) (metrics.Extractor, error) {
			net, err := inception.Load(b, weights)
			if err != nil {
				return nil, err
			}
			return &inceptionNet{net: net, batch: batch}, nil
		}},
	{Name: "fmnist", IDPrefix: fmnist.IDPrefix, Resize: "none: 32x32 gray, x/127.5−1 (tools/fmnist_common.py)",
		WeightsEnv: "CACHEBENCH_FMNIST", Pool: fmnist.FeatureDim, Logits: fmnist.NumClasses,
		Metrics: []string{"fid", "is", "precision", "recall", "kid", "class_acc"},
		open: func(b backends.Backend, weights string, _ int) (metrics.Extractor, error) {
			return fmnist.NewExtractor(b, weights)
		}},
}

// Names lists the registered kinds.
func Names() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Name)
	}
	return out
}

// Lookup returns a kind by name.
func Lookup(name string) (*Kind, error) {
	for _, k := range kinds {
		if k.Name == name {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown extractor %q (known: %s)", name, strings.Join(Names(), ", "))
}

// ByID returns the kind a stored extractor id belongs to.
func ByID(id string) (*Kind, bool) {
	for _, k := range kinds {
		if strings.HasPrefix(id, k.IDPrefix) {
			return k, true
		}
	}
	return nil, false
}

// Supports reports whether the kind's features give a metric.
func (k *Kind) Supports(metric string) bool { return slices.Contains(k.Metrics, metric) }

// ID is the stored id of the kind with a weights file (its sha256 read now).
func (k *Kind) ID(weights string) (string, error) {
	if weights == "" {
		return "", fmt.Errorf("extractor %s needs its weights: give them (or set $%s); nothing is downloaded", k.Name, k.WeightsEnv)
	}
	hash, err := checkpoint.FileHash(weights)
	if err != nil {
		return "", err
	}
	return k.IDPrefix + hash[:16], nil
}

// DefaultWeights is the weights file the kind's environment variable names ("" if unset).
func (k *Kind) DefaultWeights() string { return os.Getenv(k.WeightsEnv) }

// Open returns the extractor of a weights file on a backend configuration; the network is
// loaded at its first use.
func (k *Kind) Open(backend, weights string, batch int) (metrics.Extractor, error) {
	id, err := k.ID(weights)
	if err != nil {
		return nil, err
	}
	return &lazy{kind: k, id: id, weights: weights, backend: backend, batch: batch}, nil
}

// lazy loads its network at the first Extract.
type lazy struct {
	kind                 *Kind
	id, weights, backend string
	batch                int
	once                 sync.Once
	inner                metrics.Extractor
	err                  error
}

func (l *lazy) ID() string { return l.id }

func (l *lazy) Extract(pix []uint8, n, h, w int, progress func(done, total int)) (*metrics.Features, error) {
	l.once.Do(func() {
		b, err := engine.New(l.backend)
		if err != nil {
			l.err = err
			return
		}
		if l.inner, err = l.kind.open(b, l.weights, l.batch); err != nil {
			l.err = fmt.Errorf("%s weights %s: %w", l.kind.Name, l.weights, err)
		}
	})
	if l.err != nil {
		return nil, l.err
	}
	return l.inner.Extract(pix, n, h, w, progress)
}

// inceptionNet adapts the Inception network to metrics.Extractor.
type inceptionNet struct {
	net   *inception.Net
	batch int
}

func (e *inceptionNet) ID() string { return "" } // the lazy wrapper names it

func (e *inceptionNet) Extract(pix []uint8, n, h, w int, progress func(done, total int)) (*metrics.Features, error) {
	f, err := e.net.Extract(pix, n, h, w, inception.Options{BatchSize: e.batch, Progress: progress})
	if err != nil {
		return nil, err
	}
	return &metrics.Features{N: f.N, Pool: f.Pool3, PoolDim: inception.Pool3Dim, Spatial: f.Spatial, SpatialDim: inception.SpatialDim,
		Logits: f.LogitsUnbiased, LogitDim: inception.NumLogits}, nil
}
