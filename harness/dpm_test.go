package harness

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
)

// toyModel is a learned-sigma denoiser whose ε depends on the state, the timestep and the label
// (so guidance and the null labels matter) and whose variance channels are large, so a sampler
// that read them would drift visibly. It keeps the timesteps and labels of its calls.
type toyModel struct {
	ts     [][]float64
	labels [][]int64
}

func (m *toyModel) Spec() hook.Spec {
	return hook.Spec{Channels: 2, Height: 2, Width: 2, LearnSigma: true, NumClasses: 5}
}
func (m *toyModel) Layout() hook.Layout {
	return hook.Layout{Depth: 1, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 4, GridH: 2, GridW: 2}
}
func (m *toyModel) Forward(x []float32, t []float64, y []int64, _ hook.Options) ([]float32, error) {
	m.ts = append(m.ts, append([]float64(nil), t...))
	m.labels = append(m.labels, append([]int64(nil), y...))
	const c, hw = 2, 4
	out := make([]float32, 0, 2*len(x))
	for r := range y {
		row := x[r*c*hw : (r+1)*c*hw]
		for _, v := range row {
			out = append(out, 0.9*v+float32(t[r]/2000)+0.05*float32(y[r]))
		}
		for range row {
			out = append(out, 50)
		}
	}
	return out, nil
}

// nullModel picks its own null label per row, as PixArt-α's caption masks do.
type nullModel struct{ toyModel }

func (*nullModel) NullLabel(y int64) int64 { return 100 + y }

// With DPM-Solver++ the loop feeds the model the solver's fractional timesteps, guides every ε
// channel, drops the variance channels and follows the solver exactly.
func TestSampleDPMSolver(t *testing.T) {
	solver, err := diffusion.NewDPMSolver(6, 2)
	if err != nil {
		t.Fatal(err)
	}
	xInit := []float32{0.3, -1.2, 0.8, 0.1, -0.5, 1.7, -0.9, 0.4, 1.1, -0.2, 0.6, -1.5, 0.05, 0.9, -0.7, 0.2}
	labels := []int64{1, 3}
	m := &toyModel{}
	var infos []StepInfo
	res, err := Sample(context.Background(), m, Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 4.5, XInit: xInit, Labels: labels,
		OnStep: func(s StepInfo) error { infos = append(infos, s); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// The same chain by hand: CFG over both ε channels, solver on the ε channels.
	ref := &toyModel{}
	st := solver.NewState()
	x := append(append([]float32(nil), xInit...), xInit...)
	y := []int64{1, 3, 5, 5}
	for k := range solver.Steps() {
		tk := float64(solver.ModelTime(k))
		out, _ := ref.Forward(append(append([]float32(nil), x[:16]...), x[:16]...), []float64{tk, tk, tk, tk}, y, hook.Options{})
		if err := diffusion.GuideCFG(out, 4, 4, 2, diffusion.GuidanceAll, 4.5); err != nil {
			t.Fatal(err)
		}
		eps, _ := diffusion.EpsChannels(out, 4, 4, 2)
		r, err := st.Step(k, x, eps)
		if err != nil {
			t.Fatal(err)
		}
		x = r.X
		if s := infos[k]; s.Time != tk || s.Timestep != int64(math.Round(tk)) || s.Step != solver.Steps()-1-k || m.ts[k][3] != tk {
			t.Errorf("call %d: time %g timestep %d step %d, model got %g; want %g, %d, %d", k, s.Time, s.Timestep, s.Step, m.ts[k][3], tk, int64(math.Round(tk)), solver.Steps()-1-k)
		}
	}
	for i := range x {
		if res.State[i] != x[i] {
			t.Fatalf("state[%d] = %g, want %g (the solver by hand)", i, res.State[i], x[i])
		}
	}
	if m.ts[1][0] == math.Round(m.ts[1][0]) {
		t.Errorf("call 1 timestep %g: want DPM-Solver's fractional time", m.ts[1][0])
	}
	// A schedule with as many steps may come along (the runner counts steps with it).
	sched, _ := diffusion.NewSchedule(1000, "6")
	res2, err := Sample(context.Background(), &toyModel{}, Request{Sampler: diffusion.DPMSolverPP, Solver: solver, Schedule: sched, CFGScale: 4.5, XInit: xInit, Labels: labels})
	if err != nil || res2.State[0] != x[0] {
		t.Errorf("with a schedule: %v, state[0] %g want %g", err, res2.State[0], x[0])
	}
}

func TestSampleDPMSolverErrors(t *testing.T) {
	solver, _ := diffusion.NewDPMSolver(6, 2)
	sched, _ := diffusion.NewSchedule(1000, "10")
	x := make([]float32, 8)
	for name, r := range map[string]Request{
		"no solver":      {Sampler: diffusion.DPMSolverPP, Schedule: sched, XInit: x, Labels: []int64{0}},
		"steps mismatch": {Sampler: diffusion.DPMSolverPP, Solver: solver, Schedule: sched, XInit: x, Labels: []int64{0}},
		"no schedule":    {Sampler: diffusion.DDIM, XInit: x, Labels: []int64{0}},
	} {
		if _, err := Sample(context.Background(), &toyModel{}, r); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// A NullLabeler chooses the null row of each image; the null class itself is then no image label.
func TestNullLabeler(t *testing.T) {
	solver, _ := diffusion.NewDPMSolver(2, 2)
	x := make([]float32, 16)
	m := &nullModel{}
	if _, err := Sample(context.Background(), m, Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 2, XInit: x, Labels: []int64{4, 0}}); err != nil {
		t.Fatal(err)
	}
	if got := m.labels[0]; len(got) != 4 || got[0] != 4 || got[1] != 0 || got[2] != 104 || got[3] != 100 {
		t.Errorf("model labels %v, want [4 0 104 100]", got)
	}
	_, err := Sample(context.Background(), &nullModel{}, Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 2, XInit: x, Labels: []int64{5, 0}})
	if err == nil || !strings.Contains(err.Error(), "[0, 5)") {
		t.Errorf("label 5 (= NumClasses) with a NullLabeler: %v, want an out-of-range error", err)
	}
	// Without one, the null label stays NumClasses.
	plain := &toyModel{}
	if _, err := Sample(context.Background(), plain, Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 2, XInit: x, Labels: []int64{4, 0}}); err != nil {
		t.Fatal(err)
	}
	if got := plain.labels[0]; got[2] != 5 || got[3] != 5 {
		t.Errorf("model labels %v, want null rows 5", got)
	}
}
