package harness

import (
	"context"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
)

// epsModel is toyModel without the variance channels: PLMS needs ε only.
type epsModel struct{ toyModel }

func (m *epsModel) Spec() hook.Spec {
	s := m.toyModel.Spec()
	s.LearnSigma = false
	return s
}
func (m *epsModel) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	out, err := m.toyModel.Forward(x, t, y, opt)
	if err != nil {
		return nil, err
	}
	eps, err := diffusion.EpsChannels(out, len(y), 4, 2)
	return slices.Clone(eps), err
}

// callLog records the (call, step) pairs a policy is asked to plan and observe.
type callLog struct{ plans, observed [][2]int }

func (p *callLog) Plan(call, step int) (*hook.Plan, error) {
	p.plans = append(p.plans, [2]int{call, step})
	return nil, nil
}
func (p *callLog) Observe(call, step int, _ *hook.Plan, _ *hook.Cache) error {
	p.observed = append(p.observed, [2]int{call, step})
	return nil
}

// With PLMS the loop makes steps+1 calls at the state's timesteps (the first step's corrector
// on its predictor state), guides every ε channel, follows the PLMS state exactly, and reports
// call 0 as incomplete; the policy sees every call, both of the first step's with its step.
func TestSamplePLMS(t *testing.T) {
	const steps = 4
	p, err := diffusion.NewPLMS(steps)
	if err != nil {
		t.Fatal(err)
	}
	xInit := []float32{0.3, -1.2, 0.8, 0.1, -0.5, 1.7, -0.9, 0.4, 1.1, -0.2, 0.6, -1.5, 0.05, 0.9, -0.7, 0.2}
	m, pol := &epsModel{}, &callLog{}
	var infos []StepInfo
	res, err := Sample(context.Background(), m, Request{Sampler: diffusion.PLMS, PLMS: p, CFGScale: 3, XInit: xInit, Labels: []int64{1, 3},
		Policy: pol, OnStep: func(s StepInfo) error { infos = append(infos, s); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ref := &epsModel{}
	st := p.NewState(append(append([]float32(nil), xInit...), xInit...))
	y := []int64{1, 3, 5, 5}
	for {
		c, ok := st.Next()
		if !ok {
			break
		}
		tk := float64(c.T)
		out, _ := ref.Forward(append(append([]float32(nil), c.X[:16]...), c.X[:16]...), []float64{tk, tk, tk, tk}, y, hook.Options{})
		if err := diffusion.GuideCFG(out, 4, 2, 2, diffusion.GuidanceAll, 3); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Step(out); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(res.State, st.X()) {
		t.Errorf("final state differs from the PLMS state driven by hand")
	}
	if len(infos) != steps+1 || len(m.ts) != steps+1 {
		t.Fatalf("%d calls reported, %d model calls; want %d", len(infos), len(m.ts), steps+1)
	}
	for k, s := range infos {
		wantStep := steps - 1 - max(k-1, 0)
		if s.Call != k || s.Step != wantStep || s.Complete != (k > 0) || (s.X != nil) != (k > 0) {
			t.Errorf("call %d: reported call %d step %d complete %t (X set %t); want step %d, complete %t", k, s.Call, s.Step, s.Complete, s.X != nil, wantStep, k > 0)
		}
		if s.Time != ref.ts[k][0] || m.ts[k][0] != ref.ts[k][0] {
			t.Errorf("call %d at t=%g, want %g", k, s.Time, ref.ts[k][0])
		}
		if want := [2]int{k, wantStep}; pol.plans[k] != want || pol.observed[k] != want {
			t.Errorf("call %d: planned %v, observed %v; want %v", k, pol.plans[k], pol.observed[k], want)
		}
	}
	// The corrector runs at the next step's time.
	if m.ts[1][0] != float64(p.Timestep(1)) || m.ts[2][0] != float64(p.Timestep(1)) {
		t.Errorf("calls 1 and 2 at t=%g, %g; want both %d", m.ts[1][0], m.ts[2][0], p.Timestep(1))
	}

	// Misconfigurations are refused up front.
	for name, r := range map[string]Request{
		"no PLMS":        {Sampler: diffusion.PLMS, XInit: xInit[:8], Labels: []int64{1}},
		"with schedule":  {Sampler: diffusion.PLMS, PLMS: p, Schedule: &diffusion.Schedule{}, XInit: xInit[:8], Labels: []int64{1}},
		"PLMS with ddim": {Sampler: diffusion.DDIM, PLMS: p, Schedule: &diffusion.Schedule{}, XInit: xInit[:8], Labels: []int64{1}},
	} {
		if _, err := Sample(context.Background(), &epsModel{}, r); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if _, err := Sample(context.Background(), &toyModel{}, Request{Sampler: diffusion.PLMS, PLMS: p, XInit: xInit[:8], Labels: []int64{1}}); err == nil {
		t.Error("PLMS on a learned-sigma model: want an error")
	}
}
