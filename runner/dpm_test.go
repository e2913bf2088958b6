package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/runner"
)

// sampler = "dpmpp" runs DPM-Solver++ with a plain step count; DDPM/DDIM settings are refused
// before anything is stored.
func TestRunDPMSolver(t *testing.T) {
	dir := t.TempDir()
	j := job(t, dir, 2, runner.Shard{})
	j.Sampler, j.Steps, j.Guide, j.NumSamples = "dpmpp", "4", diffusion.GuidanceAll, 2
	j.Method, j.RawParams = "none", nil
	res, err := runner.Run(context.Background(), j)
	if err != nil || res.Done != 2 || res.Run.Steps != 4 {
		t.Fatalf("dpmpp run: %v (%+v)", err, res)
	}
	for _, c := range []struct {
		steps string
		guide int
		want  string
	}{
		{"ddim4", diffusion.GuidanceAll, "plain step count"},
		{"2,2", 0, "plain step count"},
		{"4", 3, "every ε channel"},
	} {
		j := job(t, t.TempDir(), 2, runner.Shard{})
		j.Sampler, j.Steps, j.Guide = "dpmpp", c.steps, c.guide
		if _, err := runner.Run(context.Background(), j); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("steps %q guide %d: %v, want an error about %q", c.steps, c.guide, err, c.want)
		}
		if runs, _ := j.DB.Runs(); len(runs) != 0 {
			t.Errorf("steps %q guide %d: %d runs stored", c.steps, c.guide, len(runs))
		}
	}
}
