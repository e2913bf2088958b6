package experiments

import (
	"strings"
	"testing"
)

// sampler = "dpmpp" takes a plain step count and guides every ε channel.
func TestDPMSolverSampling(t *testing.T) {
	dpm := strings.Replace(base, `sampler = "ddim"`, `sampler = "dpmpp"`, 1)
	e, err := Parse("x.toml", []byte(dpm+"[methods.none]\n[methods.half]\nmethod = \"steps\"\nsteps = 5\n"), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Sampling.Sampler != "dpmpp" || e.Sampling.Guide != GuideAll {
		t.Errorf("sampling %+v: want dpmpp guiding every channel", e.Sampling)
	}
	for _, c := range []struct{ name, src, want string }{
		{"respacing", strings.Replace(dpm, "steps = 10", `steps = "ddim10"`, 1), "sampling.steps: steps \"ddim10\": DPM-Solver++ takes a plain step count"},
		{"sections", strings.Replace(dpm, "steps = 10", `steps = "5,5"`, 1), "plain step count"},
		{"guide dit", dpm + "guide = \"dit\"\n", "sampler dpmpp guides every ε channel"},
		{"unknown", strings.Replace(base, `sampler = "ddim"`, `sampler = "euler"`, 1), "want ddim, ddpm or dpmpp"},
	} {
		_, err := Parse("x.toml", []byte(c.src+"[methods.none]\n"), Overrides{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ...%s...", c.name, err, c.want)
		}
	}
}
