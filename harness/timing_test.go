package harness

import (
	"context"
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
)

// compilingModel is a denoiser whose first call "compiles" for 30 ms and every call executes
// for 2 ms, the way a JIT backend's first call of a new shape does.
type compilingModel struct {
	calls   int
	compile time.Duration
}

func (m *compilingModel) Spec() hook.Spec {
	return hook.Spec{Channels: 1, Height: 2, Width: 2, NumClasses: 3}
}
func (m *compilingModel) Layout() hook.Layout {
	return hook.Layout{Depth: 1, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 4, GridH: 2, GridW: 2}
}
func (m *compilingModel) CompileTime() time.Duration { return m.compile }
func (m *compilingModel) Forward(x []float32, _ []float64, _ []int64, _ hook.Options) ([]float32, error) {
	if m.calls == 0 {
		time.Sleep(30 * time.Millisecond)
		m.compile += 30 * time.Millisecond
	}
	m.calls++
	time.Sleep(2 * time.Millisecond)
	return make([]float32, len(x)), nil
}

// Compilation inside a call is reported apart and not counted as forward time.
func TestCompileKeptOutOfForward(t *testing.T) {
	sched, err := diffusion.NewSchedule(1000, "4")
	if err != nil {
		t.Fatal(err)
	}
	m := &compilingModel{}
	var steps []StepInfo
	_, err = Sample(context.Background(), m, Request{Sampler: diffusion.DDIM, Schedule: sched, XInit: make([]float32, 4), Labels: []int64{0},
		OnStep: func(s StepInfo) error { steps = append(steps, s); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || steps[0].Compile != 30*time.Millisecond || steps[1].Compile != 0 {
		t.Fatalf("compile per call: %v, want 30 ms then 0", []time.Duration{steps[0].Compile, steps[1].Compile})
	}
	// The first call's forward is its 2 ms of execution, not the 32 ms it took.
	if steps[0].Forward >= 25*time.Millisecond {
		t.Errorf("first call's forward %v includes its compilation", steps[0].Forward)
	}
	var tm Timing
	for _, s := range steps {
		tm.Add(s, flopsFree{}, hook.FullPlan(m.Layout()))
	}
	if tm.Compile != 30*time.Millisecond || tm.Wall() >= 25*time.Millisecond+4*3*time.Millisecond {
		t.Errorf("timing: compile %v, wall %v", tm.Compile, tm.Wall())
	}
}

type flopsFree struct{}

func (flopsFree) BlockFLOPs(p *hook.Plan, _ int) []int64 { return make([]int64, len(p.Blocks)) }
