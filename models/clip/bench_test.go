package clip

import (
	"fmt"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
)

// benchBatch is the batch the CLIP-score benchmarks report (the comparison point).
const benchBatch = 8

// benchModels are the configurations benchmarked: the golden tiny model and ViT-B/32 with
// formula weights (speed does not depend on the values).
func benchModels(b *testing.B) map[string]*Model {
	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	b32, _ := Preset("ViT-B/32")
	out := map[string]*Model{}
	configs := map[string]Config{"tiny": goldenConfig, "ViT-B-32": b32}
	if testing.Short() { // ViT-B/32 takes about a minute on a 2-core machine
		delete(configs, "ViT-B-32")
	}
	for name, c := range configs {
		m, err := New(be, c, FormulaWeights(c, 1))
		if err != nil {
			b.Fatal(err)
		}
		m.BatchSize = benchBatch
		out[name] = m
	}
	return out
}

// BenchmarkCLIP reports images/s and texts/s at batch 8 with the analytic GFLOPs per item and
// the achieved GFLOP/s. Run: go test ./models/clip -run '^$' -bench CLIP -benchtime 1x
func BenchmarkCLIP(b *testing.B) {
	models := benchModels(b)
	for _, name := range []string{"tiny", "ViT-B-32"} {
		m, ok := models[name]
		if !ok {
			continue
		}
		r := m.ImageResolution
		pix := make([]float32, benchBatch*3*r*r)
		for i := range pix {
			pix[i] = float32(i%97)/50 - 1
		}
		tok := goldenTokenizer(b)
		rows := tok.Tokenize([]string{"a photo of a cat", "a diagram of two red squares on a white table",
			"an astronaut riding a horse on the moon", "a", "two dogs", "a bowl of fruit", "sunset", "a red car"})
		b.Run(fmt.Sprintf("images/%s/B=%d", name, benchBatch), func(b *testing.B) {
			if _, err := m.EncodePreprocessed(pix, benchBatch); err != nil { // compile and upload weights
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.EncodePreprocessed(pix, benchBatch); err != nil {
					b.Fatal(err)
				}
			}
			report(b, benchBatch, m.ImageFLOPs(), "images/s")
		})
		b.Run(fmt.Sprintf("texts/%s/B=%d", name, benchBatch), func(b *testing.B) {
			if _, err := m.EncodeText(rows); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.EncodeText(rows); err != nil {
					b.Fatal(err)
				}
			}
			report(b, benchBatch, m.TextFLOPs(), "texts/s")
		})
	}
}

func report(b *testing.B, batch int, flopsPerItem float64, unit string) {
	items := float64(batch * b.N)
	sec := b.Elapsed().Seconds()
	b.ReportMetric(items/sec, unit)
	b.ReportMetric(flopsPerItem/1e9, "GFLOP/item")
	b.ReportMetric(flopsPerItem*items/sec/1e9, "GFLOP/s")
}
