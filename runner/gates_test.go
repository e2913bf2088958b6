package runner_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/cachebench/cachebench/runner"
)

// Batch semantics of the threshold caches: with per-sample decisions an image's output depends
// on its own data alone, so batches of 5 and of 1 give the same bytes; with the reference codes'
// per-batch decision (one statistic pooled over the batch) the other images change the skips,
// and so some image (at this threshold; on the golden model most thresholds put every row on
// the same side at every call) — as this test requires, to show the flag matters.
func TestGateBatchSemantics(t *testing.T) {
	sample := func(decide string, batch int) map[string][]byte {
		dir := t.TempDir()
		j := job(t, dir, batch, runner.Shard{})
		j.Config.Method, j.Config.Sampler, j.Config.Steps = "fbcache", "ddim", "20"
		j.RawParams = map[string]string{"thresh": "0.5", "decide": decide}
		if res, err := runner.Run(context.Background(), j); err != nil || res.Done != 5 {
			t.Fatalf("fbcache decide=%s batch %d: %v", decide, batch, err)
		}
		return files(t, dir)
	}
	differs := func(a, b map[string][]byte) int {
		n := 0
		for name, v := range a {
			if !bytes.Equal(v, b[name]) {
				n++
			}
		}
		return n
	}
	if n := differs(sample("per-sample", 5), sample("per-sample", 1)); n != 0 {
		t.Errorf("per-sample decisions: %d of 5 images change with the batch size", n)
	}
	if n := differs(sample("per-batch", 5), sample("per-batch", 1)); n == 0 {
		t.Errorf("per-batch decisions: no image changed with the batch size (the pooled statistic should couple them; pick a threshold that does)")
	}
}
