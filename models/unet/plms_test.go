package unet_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/unet"
)

// TestPLMSFreeRunning samples testdata/sd-unet's PLMS chain with this UNet and the PLMS state
// machine: 10 steps, 11 calls, CFG 7.5 on the batch [uncond | cond]. Every call's raw ε, the
// states, x₀ predictions and the final latent are compared end to end (1e-4).
func TestPLMSFreeRunning(t *testing.T) {
	const (
		scale   = 7.5
		freeTol = 1e-4
	)
	m := load(t, golden.Open(t, weightsFile))
	g := golden.Open(t, "sd-unet/plms.safetensors")
	p, err := diffusion.NewPLMS(10)
	if err != nil {
		t.Fatal(err)
	}
	context := append(golden.F32(t, g, "uncond"), golden.F32(t, g, "cond")...)
	worst := map[string]float64{}
	check := func(name string, got, want []float32) {
		t.Helper()
		e := golden.RelToMax(got, want)
		if e > freeTol {
			t.Errorf("%s: rel error %.3g > %g", name, e, freeTol)
		}
		worst[name] = max(worst[name], e)
	}
	s := p.NewState(golden.F32(t, g, "x_T"))
	t0 := time.Now()
	for {
		c, ok := s.Next()
		if !ok {
			break
		}
		k := c.Call
		x := append(append([]float32(nil), c.X...), c.X...)
		check("x_in", x, golden.F32(t, g, fmt.Sprintf("call_%d_x_in", k)))
		tm := float64(c.T)
		if want := golden.I64(t, g, fmt.Sprintf("call_%d_t", k))[0]; c.T != want {
			t.Fatalf("call %d at t=%d, want %d", k, c.T, want)
		}
		raw, err := m.Forward(x, []float64{tm, tm, tm, tm}, context, unet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		check("eps_raw", raw, golden.F32(t, g, fmt.Sprintf("call_%d_eps_raw", k)))
		half := len(raw) / 2
		eps := make([]float32, half)
		for j := range eps {
			u, cv := raw[j], raw[half+j]
			eps[j] = u + float32(scale*float32(cv-u))
		}
		check("eps_cfg", eps, golden.F32(t, g, fmt.Sprintf("call_%d_eps_cfg", k)))
		res, err := s.Step(eps)
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete {
			check("x", res.X, golden.F32(t, g, fmt.Sprintf("x_%d", c.Step)))
			check("pred_x0", res.PredXStart, golden.F32(t, g, fmt.Sprintf("pred_x0_%d", c.Step)))
		}
	}
	check("final", s.X(), golden.F32(t, g, "final"))
	t.Logf("%d calls in %v; max rel errors %v", p.Calls(), time.Since(t0), worst)
}
