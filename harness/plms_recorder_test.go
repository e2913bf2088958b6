package harness_test

import (
	"context"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/unet"
)

// The recorder follows PLMS's two-call first step with an uncached PLMS trajectory of its own:
// method none follows it exactly, DaTo drifts from it; call 0 (which finishes no step) records its
// FLOPs but no state; DaTo's pruned self-attentions record their dynamics.
func TestRecorderPLMS(t *testing.T) {
	b, _ := engine.New("")
	m, err := unet.Load(b, golden.Path("sd-unet/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	d, err := unet.NewDenoiser(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "sd-unet/plms.safetensors")
	uncond := golden.F32(t, g, "uncond")
	if err := d.SetContexts(golden.F32(t, g, "cond"), uncond[:len(uncond)/2]); err != nil {
		t.Fatal(err)
	}
	const steps = 4
	deviation := map[string]float64{}
	for _, method := range []string{"none", "dato"} {
		p, _ := diffusion.NewPLMS(steps)
		pol, _, err := methods.New(method, nil, methods.Env{Layout: d.Layout(), Steps: steps, Rows: 4, Samples: []int{0, 1}})
		if err != nil {
			t.Fatal(err)
		}
		rec := harness.NewRecorder(b, harness.RecordLight, []int{0, 1}, 1)
		_, err = harness.Sample(context.Background(), d, harness.Request{Sampler: diffusion.PLMS, PLMS: p, CFGScale: 7.5,
			GuideChannels: diffusion.GuidanceAll, XInit: golden.F32(t, g, "x_T"), Labels: []int64{0, 1}, Policy: pol,
			Cache: hook.NewCache(d.Layout()), Recorder: rec})
		stats := rec.Stats()
		rec.Close()
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		pruned := 0
		for _, s := range stats {
			switch {
			case s.Module == "state" && s.Call == 0 && (s.ErrRelL2 != nil || s.FLOPs == nil || *s.FLOPs == 0):
				t.Errorf("%s: call 0 state row %+v, want FLOPs and no state error", method, s)
			case s.Module == "state" && s.Call == steps && s.ErrRelL2 != nil:
				deviation[method] = *s.ErrRelL2
			case s.Action == "prune" && s.DynRelL1 != nil && s.ErrRelL2 != nil:
				pruned++
			}
		}
		if method == "dato" && pruned == 0 {
			t.Error("dato: no pruned module recorded with its dynamics and cache error")
		}
	}
	if dv, ok := deviation["none"]; !ok || dv > 1e-6 {
		t.Errorf("none: final state deviates from the uncached trajectory by %g (recorded: %v)", dv, ok)
	}
	if !(deviation["dato"] > 0) {
		t.Errorf("dato: final deviation %g, want > 0", deviation["dato"])
	}
}
