package harness_test

import (
	"context"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
)

type recRun struct {
	m       *dit.Model
	stats   []store.StepStat
	sample  []float32
	outputs map[[3]int][]float32 // (call, block, module) → host copy of the used module output
}

func recordRun(t *testing.T, method string, params map[string]string, level harness.Level, audit int, capture bool) recRun {
	t.Helper()
	b, _ := engine.New("")
	m, err := dit.Load(b, golden.Path("dit/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	sched, _ := diffusion.NewSchedule(1000, "10")
	g := golden.Open(t, "dit/sampling_ddpm.safetensors")
	x0 := golden.F32(t, g, "x_init")[:2*4*8*8]
	l := m.Layout()
	pol, _, err := methods.New(method, params, methods.Env{Layout: l, Steps: 10, Rows: 4})
	if err != nil {
		t.Fatal(err)
	}
	req := harness.Request{Sampler: diffusion.DDPM, Schedule: sched, CFGScale: 1.5, XInit: x0, Labels: []int64{4, 9},
		Policy: pol, Cache: hook.NewCache(l),
		Noise: func(k int, dst []float32) error { diffusion.NewNoise(3, k).Fill(dst); return nil }}
	var rec *harness.Recorder
	if level != harness.RecordOff {
		rec = harness.NewRecorder(b, level, []int{0, 1}, audit)
		defer rec.Close()
		req.Recorder = rec
	}
	run := recRun{m: m, outputs: map[[3]int][]float32{}}
	if capture {
		// Capture every used module output through a wrapping model hook.
		req.Recorder = nil
		call := 0
		req.OnStep = func(s harness.StepInfo) error { call++; return nil }
		cm := &capturing{Model: m, out: run.outputs, call: &call}
		res, err := harness.Sample(context.Background(), cm, req)
		if err != nil {
			t.Fatal(err)
		}
		run.sample = res.Sample
		return run
	}
	res, err := harness.Sample(context.Background(), m, req)
	if err != nil {
		t.Fatal(err)
	}
	run.sample = res.Sample
	if rec != nil {
		run.stats = rec.Stats()
	}
	return run
}

// capturing wraps a model to copy every used module output to the host.
type capturing struct {
	*dit.Model
	out  map[[3]int][]float32
	call *int
}

func (c *capturing) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	opt.Modules = func(b int, m hook.Module, _ hook.Action, _ int, o *tensors.Tensor) {
		if o != nil {
			c.out[[3]int{*c.call, b, int(m)}] = tensors.MustCopyFlatData[float32](o)
		}
	}
	return c.Model.Forward(x, t, y, opt)
}

func relL2(a, b []float32) float64 {
	var d, r float64
	for i := range a {
		d += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
		r += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / r)
}

func relL1(a, b []float32) float64 {
	var d, r float64
	for i := range a {
		d += math.Abs(float64(a[i]) - float64(b[i]))
		r += math.Abs(float64(b[i]))
	}
	return d / r
}

func find(stats []store.StepStat, call, block int, module string) *store.StepStat {
	for i := range stats {
		s := &stats[i]
		if s.Call == call && s.Block == block && s.Module == module && s.Sample == nil {
			return s
		}
	}
	return nil
}

// Recorded dynamics equal an independent computation from the saved module outputs; recording
// changes no sample bit.
func TestRecorderDynamics(t *testing.T) {
	params := map[string]string{"N": "3"}
	ref := recordRun(t, "fora", params, harness.RecordOff, 0, true)
	light := recordRun(t, "fora", params, harness.RecordLight, 0, false)
	full := recordRun(t, "fora", params, harness.RecordFull, 1, false)
	off := recordRun(t, "fora", params, harness.RecordOff, 0, false)
	if golden.MaxAbs(off.sample, ref.sample) != 0 || golden.MaxAbs(light.sample, ref.sample) != 0 || golden.MaxAbs(full.sample, ref.sample) != 0 {
		t.Fatal("recording changed the samples")
	}
	checked := 0
	for call := 1; call < 10; call++ {
		for b := range 4 {
			for mi, name := range []string{"attn", "mlp"} {
				s := find(light.stats, call, b, name)
				if s == nil || s.DynRelL2 == nil {
					t.Fatalf("call %d block %d %s: no dynamics row", call, b, name)
				}
				cur, prev := ref.outputs[[3]int{call, b, mi}], ref.outputs[[3]int{call - 1, b, mi}]
				if e := math.Abs(*s.DynRelL2 - relL2(cur, prev)); e > 1e-5*math.Max(1, relL2(cur, prev)) {
					t.Errorf("call %d block %d %s: dyn_rel_l2 %g, independent %g", call, b, name, *s.DynRelL2, relL2(cur, prev))
				}
				if e := math.Abs(*s.DynRelL1 - relL1(cur, prev)); e > 1e-5*math.Max(1, relL1(cur, prev)) {
					t.Errorf("call %d block %d %s: dyn_rel_l1 %g, independent %g", call, b, name, *s.DynRelL1, relL1(cur, prev))
				}
				if s.Action == "reuse" && *s.DynRelL2 != 0 {
					t.Errorf("call %d block %d %s: a reused output moved (%g)", call, b, name, *s.DynRelL2)
				}
				checked++
			}
		}
	}
	if checked != 72 {
		t.Errorf("checked %d rows", checked)
	}
	// Full mode adds per-sample rows; light has none.
	perSample := 0
	for _, s := range full.stats {
		if s.Sample != nil {
			perSample++
		}
	}
	for _, s := range light.stats {
		if s.Sample != nil {
			t.Fatal("light recording wrote per-sample rows")
		}
	}
	if perSample == 0 {
		t.Error("full recording wrote no per-sample rows")
	}
}

// none has zero cache error and follows its own uncached trajectory exactly; FORA's reused
// attention error equals the distance between the cached and the freshly computed attention.
func TestRecorderCacheError(t *testing.T) {
	none := recordRun(t, "none", nil, harness.RecordLight, 1, false)
	for _, s := range none.stats {
		if s.Module == "state" && s.ErrRelL2 != nil && *s.ErrRelL2 > 1e-6 {
			t.Errorf("none, call %d: state deviates from the uncached trajectory by %g", s.Call, *s.ErrRelL2)
		}
		if s.Block >= 0 && s.ErrRelL2 != nil {
			t.Errorf("none, call %d block %d %s: cache error recorded for a fully computed module", s.Call, s.Block, s.Module)
		}
	}
	fora := recordRun(t, "fora", map[string]string{"N": "3"}, harness.RecordLight, 1, false)
	var seen int
	for _, s := range fora.stats {
		if s.Block >= 0 && s.Action == "reuse" {
			if s.ErrRelL2 == nil || !(*s.ErrRelL2 > 0) {
				t.Errorf("fora call %d block %d %s: reused without a positive cache error", s.Call, s.Block, s.Module)
			}
			seen++
		}
		if s.Module == "state" && s.Call == 9 && (s.ErrRelL2 == nil || !(*s.ErrRelL2 > 0)) {
			t.Error("fora: no deviation from the uncached trajectory at the end")
		}
	}
	if seen == 0 {
		t.Fatal("no reused modules")
	}
	// Independent check of one reuse: the error of block 1's attention at call 2 (a reuse step
	// after the full step at call 1) is ‖cached − fresh‖/‖fresh‖ on the audit rows, where fresh is a
	// full computation on the same input.
	s := find(fora.stats, 2, 1, "attn")
	if s == nil || s.Action != "reuse" {
		t.Fatalf("call 2 block 1 attn: %+v", s)
	}
	indep := independentReuseError(t)
	if math.Abs(*s.ErrRelL2-indep) > 1e-5*indep {
		t.Errorf("recorded reuse error %g, independent %g", *s.ErrRelL2, indep)
	}
}

// independentReuseError replays FORA's first three calls and computes block 1's attention error
// at call 2 by hand.
func independentReuseError(t *testing.T) float64 {
	t.Helper()
	b, _ := engine.New("")
	m, _ := dit.Load(b, golden.Path("dit/weights.safetensors"), 4)
	sched, _ := diffusion.NewSchedule(1000, "10")
	g := golden.Open(t, "dit/sampling_ddpm.safetensors")
	x0 := golden.F32(t, g, "x_init")[:2*4*8*8]
	l := m.Layout()
	pol, _, _ := methods.New("fora", map[string]string{"N": "3"}, methods.Env{Layout: l, Steps: 10, Rows: 4})
	var inputs [][]float32
	var cached []float32
	cm := &inputCapture{Model: m, inputs: &inputs, cached: &cached}
	_, err := harness.Sample(context.Background(), cm, harness.Request{Sampler: diffusion.DDPM, Schedule: sched, CFGScale: 1.5,
		XInit: x0, Labels: []int64{4, 9}, Policy: pol, Cache: hook.NewCache(l),
		Noise: func(k int, dst []float32) error { diffusion.NewNoise(3, k).Fill(dst); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// A full computation on call 2's input, audit rows (image 0 and its null row).
	per := 4 * 8 * 8
	in := inputs[2]
	audit := append(append([]float32(nil), in[:per]...), in[2*per:3*per]...)
	var fresh []float32
	_, err = m.Forward(audit, []float64{float64(sched.TimestepMap[7]), float64(sched.TimestepMap[7])}, []int64{4, 10}, hook.Options{
		Modules: func(blk int, mod hook.Module, _ hook.Action, _ int, o *tensors.Tensor) {
			if blk == 1 && mod == hook.Attn {
				fresh = tensors.MustCopyFlatData[float32](o)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	n := len(cached) / 4
	used := append(append([]float32(nil), cached[:n]...), cached[2*n:3*n]...)
	return relL2(used, fresh)
}

type inputCapture struct {
	*dit.Model
	inputs *[][]float32
	cached *[]float32
}

func (c *inputCapture) Forward(x []float32, t []float64, y []int64, opt hook.Options) ([]float32, error) {
	*c.inputs = append(*c.inputs, append([]float32(nil), x...))
	call := len(*c.inputs) - 1
	opt.Modules = func(b int, m hook.Module, _ hook.Action, _ int, o *tensors.Tensor) {
		if call == 2 && b == 1 && m == hook.Attn {
			*c.cached = tensors.MustCopyFlatData[float32](o)
		}
	}
	return c.Model.Forward(x, t, y, opt)
}
