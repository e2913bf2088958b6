package inception

import (
	"testing"
	"time"
)

// BenchmarkForward measures images per second at batch 8 on 299×299 inputs (no resize), next to
// the network's arithmetic (2 FLOPs per multiply-add, convolutions and classifier).
//
//	go test ./models/inception -run '^$' -bench Forward -benchtime 3x
func BenchmarkForward(b *testing.B) {
	const batch = 8
	net := goldenNet(b)
	pix, n, h, w := goldenImages(b, "images_299")
	images := make([]uint8, 0, batch*h*w*3)
	for len(images) < cap(images) {
		images = append(images, pix[:min(n*h*w*3, cap(images)-len(images))]...)
	}
	// The first call compiles the graph and uploads the weights.
	if _, err := net.Extract(images, batch, h, w, Options{BatchSize: batch}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := net.Extract(images, batch, h, w, Options{BatchSize: batch}); err != nil {
			b.Fatal(err)
		}
	}
	sec := time.Since(start).Seconds()
	perImage := float64(FLOPsPerImage())
	b.ReportMetric(float64(b.N*batch)/sec, "images/s")
	b.ReportMetric(perImage/1e9, "GFLOP/img")
	b.ReportMetric(perImage*float64(b.N*batch)/sec/1e9, "GFLOP/s")
}
