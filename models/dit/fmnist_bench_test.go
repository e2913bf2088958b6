package dit_test

import (
	"fmt"
	"testing"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/dit"
)

// BenchmarkFMNISTForward times one uncached forward of the shipped Fashion-MNIST DiT (the
// embedded default's model) at the batch sizes of `make bench` (rows = 2 × images under CFG).
func BenchmarkFMNISTForward(b *testing.B) {
	be, err := engine.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := dit.Load(be, "../../assets/fmnist_dit.safetensors", 3)
	if err != nil {
		b.Fatal(err)
	}
	for _, rows := range []int{50, 250} {
		x := make([]float32, rows*32*32)
		t := make([]float64, rows)
		y := make([]int64, rows)
		for i := range rows {
			t[i], y[i] = float64(10*i%1000), int64(i%11)
		}
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			if _, err := m.Forward(x, t, y, dit.Options{}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Forward(x, t, y, dit.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*rows), "µs/row")
		})
	}
}
