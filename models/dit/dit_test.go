package dit_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

func goldenModel(t testing.TB, file string) *dit.Model {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.Load(b, golden.Path(file), 4)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tolerances from testdata/dit/README.md (max|got − golden| / max|golden|).
var forwardTol = map[string]float64{
	"t_emb": 5e-5, "c": 5e-5, "block0_adaln": 5e-5, "final_adaln": 5e-5, "block0_attn": 5e-5, "block0_mlp": 5e-5,
	"x_embed": 1e-5, "y_emb": 1e-5, "block0_attn_raw": 1e-5, "block0_mlp_raw": 1e-5, "final_tokens": 1e-5, "out": 1e-5,
	"block_0": 1e-5, "block_1": 1e-5, "block_2": 1e-5, "block_3": 1e-5,
}

func TestForwardGolden(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	if got := m.Config.String(); !strings.Contains(got, "depth 4, hidden 64, 4 heads, patch 2, input 4x8x8, 10 classes, learned sigma") {
		t.Fatalf("inferred config %q", got)
	}
	g := golden.Open(t, "dit/forward.safetensors")
	probes := map[string][]float32{}
	probe := func(name string, x *tensors.Tensor) { probes[name] = tensors.MustCopyFlatData[float32](x) }
	t64 := toF64(golden.I64(t, g, "t"))
	out, err := m.Forward(golden.F32(t, g, "x"), t64, golden.I64(t, g, "y"), dit.Options{Probe: probe})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(probes["t_freq"], golden.F32(t, g, "t_freq")); e > 1e-4 {
		t.Errorf("t_freq: abs error %.3g > 1e-4", e)
	}
	for name, tol := range forwardTol {
		got, ok := probes[name]
		if !ok {
			t.Errorf("probe %s not reported", name)
			continue
		}
		if e := golden.RelToMax(got, golden.F32(t, g, name)); e > tol {
			t.Errorf("%s: rel error %.3g > %g", name, e, tol)
		} else {
			t.Logf("%-16s rel error %.3g (tol %g)", name, e, tol)
		}
	}
	if e := golden.RelToMax(out, probes["out"]); e != 0 {
		t.Errorf("returned output differs from probed out by %.3g", e)
	}

	// CFG batch: forward on the combined batch, then guidance on channels 0–2.
	xcfg := golden.F32(t, g, "x_cfg")
	raw, err := m.Forward(xcfg, toF64(golden.I64(t, g, "t_cfg")), golden.I64(t, g, "y_cfg"), dit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.RelToMax(raw, golden.F32(t, g, "out_cfg_model")); e > 1e-5 {
		t.Errorf("out_cfg_model: rel error %.3g > 1e-5", e)
	}
	if err := diffusion.GuideCFG(raw, 4, 8, 4, harness.DefaultGuideChannels, 4.0); err != nil {
		t.Fatal(err)
	}
	if e := golden.RelToMax(raw, golden.F32(t, g, "out_cfg")); e > 2e-5 {
		t.Errorf("out_cfg: rel error %.3g > 2e-5", e)
	}
}

// All three checkpoint layouts hold the same weights and must give identical outputs.
func TestCheckpointFormatsAgree(t *testing.T) {
	g := golden.Open(t, "dit/forward.safetensors")
	var ref []float32
	for _, file := range []string{"dit/weights.safetensors", "checkpoint/weights.pt", "checkpoint/train_checkpoint.pt"} {
		m := goldenModel(t, file)
		out, err := m.Forward(golden.F32(t, g, "x"), toF64(golden.I64(t, g, "t")), golden.I64(t, g, "y"), dit.Options{})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if ref == nil {
			ref = out
			continue
		}
		if e := golden.MaxAbs(out, ref); e != 0 {
			t.Errorf("%s: output differs from safetensors weights by %.3g", file, e)
		}
	}
}

func TestSamplingGolden(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	sched, err := diffusion.NewSchedule(1000, "20")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []diffusion.Kind{diffusion.DDPM, diffusion.DDIM} {
		t.Run(string(kind), func(t *testing.T) {
			g := golden.Open(t, "dit/sampling_"+string(kind)+".safetensors")
			y := golden.I64(t, g, "y")
			var worst float64
			req := harness.Request{
				Sampler: kind, Schedule: sched, CFGScale: 1.5,
				XInit: golden.F32(t, g, "x_init"), Labels: y[:2],
				OnStep: func(s harness.StepInfo) error {
					for name, got := range map[string][]float32{"x": s.X, "pred_xstart": s.PredXStart, "model_out": s.ModelOut} {
						e := golden.RelToMax(got, golden.F32(t, g, fmt.Sprintf("%s_%03d", name, s.Call)))
						worst = max(worst, e)
						if e > 1e-5 {
							t.Errorf("call %d %s: rel error %.3g > 1e-5", s.Call, name, e)
						}
					}
					return nil
				},
			}
			if kind == diffusion.DDPM {
				req.Noise = func(k int, dst []float32) error {
					copy(dst, golden.F32(t, g, fmt.Sprintf("noise_%03d", k)))
					return nil
				}
			}
			res, err := harness.Sample(context.Background(), m, req)
			if err != nil {
				t.Fatal(err)
			}
			if e := golden.RelToMax(res.Sample, golden.F32(t, g, "sample")); e > 1e-5 {
				t.Errorf("sample: rel error %.3g > 1e-5", e)
			}
			t.Logf("%s: worst per-step rel error %.3g", kind, worst)
		})
	}
}

// Partial with every token equals Full; partial with none equals Reuse; a partial step changes
// only the selected rows of the MLP cache.
func TestPartialPlanInvariants(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	g := golden.Open(t, "dit/forward.safetensors")
	x, ts, y := golden.F32(t, g, "x"), toF64(golden.I64(t, g, "t")), golden.I64(t, g, "y")
	l := m.Layout()
	cache := hook.NewCache(l)
	full, err := m.Forward(x, ts, y, dit.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	before := tensors.MustCopyFlatData[float32](cache.Out(1, 1))
	rows := func(k int) [][]int32 {
		r := make([][]int32, 3)
		for b := range r {
			for i := range k {
				r[b] = append(r[b], int32((i*5+b)%l.Tokens))
			}
		}
		return r
	}
	plan := func(mlp hook.ModulePlan) *hook.Plan {
		p := hook.FullPlan(l)
		for b := range p.Blocks {
			p.Blocks[b].Modules[0].Action = hook.Reuse
			p.Blocks[b].Modules[1] = mlp
		}
		return p
	}
	reuse, err := m.Forward(x, ts, y, dit.Options{Plan: plan(hook.ModulePlan{Action: hook.Reuse}), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(reuse, full); e != 0 {
		t.Errorf("reusing the caches of the same inputs changed the output by %.3g", e)
	}
	empty, err := m.Forward(x, ts, y, dit.Options{Plan: plan(hook.ModulePlan{Action: hook.Partial, Tokens: make([][]int32, 3)}), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(empty, full); e != 0 {
		t.Errorf("partial with k=0 differs from reuse by %.3g", e)
	}
	// Partial refresh at a different timestep: selected rows change, others keep the cache.
	ts2 := []float64{100, 200, 300} // differs from ts in every row
	if _, err := m.Forward(x, ts2, y, dit.Options{Plan: plan(hook.ModulePlan{Action: hook.Partial, Tokens: rows(5)}), Cache: cache}); err != nil {
		t.Fatal(err)
	}
	after := tensors.MustCopyFlatData[float32](cache.Out(1, 1))
	sel := map[[2]int]bool{}
	for b, r := range rows(5) {
		for _, tok := range r {
			sel[[2]int{b, int(tok)}] = true
		}
	}
	D := l.Hidden
	for b := range 3 {
		for n := range l.Tokens {
			changed := false
			for d := range D {
				i := (b*l.Tokens+n)*D + d
				changed = changed || after[i] != before[i]
			}
			if changed != sel[[2]int{b, n}] {
				t.Errorf("row %d token %d: changed=%t, selected=%t", b, n, changed, sel[[2]int{b, n}])
			}
		}
	}
	// All tokens selected through the partial path equals a full MLP over the reused attention.
	all := make([][]int32, 3)
	for b := range all {
		for i := range l.Tokens {
			all[b] = append(all[b], int32(l.Tokens-1-i))
		}
	}
	c1, c2 := hook.NewCache(l), hook.NewCache(l)
	for _, c := range []*hook.Cache{c1, c2} {
		if _, err := m.Forward(x, ts, y, dit.Options{Cache: c}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := m.Forward(x, ts2, y, dit.Options{Plan: plan(hook.ModulePlan{Action: hook.Partial, Tokens: all}), Cache: c1})
	if err != nil {
		t.Fatal(err)
	}
	bOut, err := m.Forward(x, ts2, y, dit.Options{Plan: plan(hook.ModulePlan{Action: hook.Full}), Cache: c2})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(a, bOut); e > 1e-6 {
		t.Errorf("partial over all tokens differs from full MLP by %.3g", e)
	}
}

func TestForwardErrors(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	x := make([]float32, 4*8*8)
	for _, c := range []struct {
		x    []float32
		t    []float64
		y    []int64
		want string
	}{
		{x, []float64{1}, []int64{11}, "label 11"},
		{x, []float64{1}, []int64{-1}, "label -1"},
		{x[:10], []float64{1}, []int64{1}, "x has 10 values"},
		{x, []float64{1, 2}, []int64{1}, "2 timesteps and 1 labels"},
		{append([]float32{float32(math.NaN())}, x[1:]...), []float64{1}, []int64{1}, "non-finite"},
	} {
		_, err := m.Forward(c.x, c.t, c.y, dit.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
	p := hook.FullPlan(m.Layout())
	p.Blocks[2].Modules[0].Action = hook.Reuse
	if _, err := m.Forward(x, []float64{1}, []int64{1}, dit.Options{Plan: p}); err == nil || !strings.Contains(err.Error(), "block 2 attn") {
		t.Errorf("reuse without cache: got %v", err)
	}
}

func TestWeightErrors(t *testing.T) {
	f, err := checkpoint.Load(golden.Path("dit/weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dit.InferConfig(f, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := engine.New("")
	clone := func() *checkpoint.File {
		ts := map[string]*checkpoint.Tensor{}
		for k, v := range f.Tensors {
			ts[k] = v
		}
		return &checkpoint.File{Path: "w.safetensors", Tensors: ts}
	}
	missing := clone()
	delete(missing.Tensors, "blocks.3.mlp.fc2.bias")
	if _, err := dit.New(b, c, missing); err == nil || !strings.Contains(err.Error(), `missing tensor "blocks.3.mlp.fc2.bias"`) {
		t.Errorf("missing tensor: %v", err)
	}
	extra := clone()
	extra.Tensors["blocks.9.attn.qkv.weight"] = f.Tensors["blocks.0.attn.qkv.weight"]
	if _, err := dit.New(b, c, extra); err == nil || !strings.Contains(err.Error(), "unexpected tensor") {
		t.Errorf("extra tensor: %v", err)
	}
	bad := clone()
	bad.Tensors["blocks.1.attn.proj.weight"] = checkpoint.NewF32(make([]float32, 64*32), 64, 32)
	if _, err := dit.New(b, c, bad); err == nil || !strings.Contains(err.Error(), "[64, 32], want [64, 64]") {
		t.Errorf("misshapen tensor: %v", err)
	}
	if _, err := dit.InferConfig(f, 5); err == nil {
		t.Error("64 hidden / 5 heads: want error")
	}
}

// Other sizes run through the same code: patch 4, 3 channels, no learned sigma, 7 classes.
func TestOtherConfigs(t *testing.T) {
	b, _ := engine.New("")
	for _, c := range []dit.Config{
		{InputSize: 16, PatchSize: 4, InChannels: 3, Hidden: 32, Depth: 2, Heads: 2, MLPRatio: 2, NumClasses: 7, LearnSigma: false},
		{InputSize: 8, PatchSize: 2, InChannels: 1, Hidden: 48, Depth: 3, Heads: 3, MLPRatio: 4, NumClasses: 3, LearnSigma: true},
	} {
		f := dit.RandomWeights(c, 1)
		m, err := dit.New(b, c, f)
		if err != nil {
			t.Fatal(err)
		}
		sched, _ := diffusion.NewSchedule(1000, "5")
		res, err := harness.Sample(context.Background(), m, harness.Request{
			Sampler: diffusion.DDPM, Schedule: sched, CFGScale: 2,
			XInit: make([]float32, 2*c.InChannels*c.InputSize*c.InputSize), Labels: []int64{0, 2},
			Noise: func(k int, dst []float32) error { diffusion.NewNoise(1, k).Fill(dst); return nil },
		})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if len(res.Sample) != 2*c.InChannels*c.InputSize*c.InputSize {
			t.Errorf("%s: sample has %d values", c, len(res.Sample))
		}
		// The architecture is recoverable from the weights alone (heads given).
		got, err := dit.InferConfig(f, c.Heads)
		if err != nil || got != c {
			t.Errorf("dit.InferConfig = %+v, %v; want %+v", got, err, c)
		}
	}
}

func toF64(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Skipped ranges and predicted outputs: replaying a call's own caches reproduces its output.
func TestSkipAndPredict(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	g := golden.Open(t, "dit/forward.safetensors")
	x, ts, y := golden.F32(t, g, "x"), toF64(golden.I64(t, g, "t")), golden.I64(t, g, "y")
	l := m.Layout()
	cache := hook.NewCache(l)
	all, mid := hook.Span{From: 0, To: l.Depth - 1}, hook.Span{From: 1, To: 2}
	p := hook.FullPlan(l)
	p.Keep = []hook.Span{all, mid}
	full, err := m.Forward(x, ts, y, dit.Options{Plan: p, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	skipPlan := func(sp hook.Span, mode hook.SkipMode) *hook.Plan {
		q := hook.FullPlan(l)
		q.Skips = []hook.SpanSkip{{Span: sp, Mode: mode}}
		for b := sp.From; b <= sp.To; b++ {
			for i := range q.Blocks[b].Modules {
				q.Blocks[b].Modules[i].Action = hook.Skip
			}
		}
		return q
	}
	for _, c := range []struct {
		name string
		plan *hook.Plan
		tol  float64
	}{
		{"replace all blocks", skipPlan(all, hook.SkipReplace), 0},
		{"residual of blocks 1-2", skipPlan(mid, hook.SkipResidual), 1e-6},
	} {
		out, err := m.Forward(x, ts, y, dit.Options{Plan: c.plan, Cache: cache})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if e := golden.MaxAbs(out, full); e > c.tol {
			t.Errorf("%s: output differs from the full call by %.3g", c.name, e)
		}
	}
	// Cached spans survive the calls that used them.
	if _, err := m.Forward(x, ts, y, dit.Options{Plan: skipPlan(all, hook.SkipReplace), Cache: cache}); err != nil {
		t.Fatalf("second replace: %v", err)
	}
	// A full call that starts a history, then a one-term series of it: the full call again.
	hist := hook.NewCache(l)
	h := hook.FullPlan(l)
	q := hook.FullPlan(l)
	for b := range q.Blocks {
		for i := range q.Blocks[b].Modules {
			h.Blocks[b].Modules[i].History = &hook.History{Step: 1, Orders: 1}
			q.Blocks[b].Modules[i] = hook.ModulePlan{Action: hook.Predict, Series: &hook.Series{Scale: []float32{1}, Power: []float32{1}}}
		}
	}
	if _, err := m.Forward(x, ts, y, dit.Options{Plan: h, Cache: hist}); err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward(x, ts, y, dit.Options{Plan: q, Cache: hist})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(out, full); e != 0 {
		t.Errorf("predicting the stored history differs from the full call by %.3g", e)
	}
	bad := skipPlan(mid, hook.SkipResidual)
	if _, err := m.Forward(x, ts, y, dit.Options{Plan: bad, Cache: hook.NewCache(l)}); err == nil || !strings.Contains(err.Error(), "needs that range's cached") {
		t.Errorf("skip without a cached range: %v", err)
	}
}

// Probing after plain calls (and the reverse) uses the right compiled variants.
func TestProbeAfterPlainCalls(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	g := golden.Open(t, "dit/forward.safetensors")
	x, ts, y := golden.F32(t, g, "x"), toF64(golden.I64(t, g, "t")), golden.I64(t, g, "y")
	plain, err := m.Forward(x, ts, y, dit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	probed, err := m.Forward(x, ts, y, dit.Options{Probe: func(string, *tensors.Tensor) { n++ }})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.MaxAbs(plain, probed); e != 0 || n == 0 {
		t.Errorf("probed output differs by %.3g (%d probes)", e, n)
	}
	if _, err := m.Forward(x, ts, y, dit.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestDeferredChoice checks the token choice made inside the forward (ToCa/DuCa `norm` and
// `similarity`): the score the picker sees is that of the MLP input recomputed on the host from
// probed intermediates, the plan records the picked tokens, and the output equals the same
// partial step planned ahead with those tokens.
func TestDeferredChoice(t *testing.T) {
	m := goldenModel(t, "dit/weights.safetensors")
	g := golden.Open(t, "dit/forward.safetensors")
	x, ts, y := golden.F32(t, g, "x"), toF64(golden.I64(t, g, "t")), golden.I64(t, g, "y")
	ts2 := []float64{100, 200, 300}
	l := m.Layout()
	B, N, D := len(ts), l.Tokens, l.Hidden
	for _, kind := range []hook.TokenScore{hook.ScoreNorm, hook.ScoreSimilarity} {
		t.Run(kind.String(), func(t *testing.T) {
			c1, c2 := hook.NewCache(l), hook.NewCache(l)
			for _, c := range []*hook.Cache{c1, c2} {
				if _, err := m.Forward(x, ts, y, dit.Options{Cache: c}); err != nil {
					t.Fatal(err)
				}
			}
			cachedMLP := make([][]float32, l.Depth)
			for b := range cachedMLP {
				cachedMLP[b] = tensors.MustCopyFlatData[float32](c1.Out(b, 1))
			}
			scores := make([][][]float32, l.Depth)
			chosen := make([][][]int32, l.Depth)
			p := hook.FullPlan(l)
			for b := range p.Blocks {
				p.Blocks[b].Modules[0].Action = hook.Reuse
				p.Blocks[b].Modules[1] = hook.ModulePlan{Action: hook.Partial, Select: &hook.Selection{K: 5 + b, Score: kind, StaleNorm: 1}}
			}
			choices := func(b int, mod hook.Module, s [][]float32, c [][]int32) {
				scores[b], chosen[b] = s, c
			}
			probed := map[string][]float32{}
			got, err := m.Forward(x, ts2, y, dit.Options{Plan: p, Cache: c1, Tokens: true, Choices: choices, Probe: func(name string, v *tensors.Tensor) {
				probed[name] = tensors.MustCopyFlatData[float32](v)
			}})
			if err != nil {
				t.Fatal(err)
			}
			planned := hook.FullPlan(l)
			for b := range planned.Blocks {
				tok := p.Blocks[b].Modules[1].Tokens
				if len(tok) != B || len(tok[0]) != 5+b {
					t.Fatalf("block %d: plan holds %d×%d picked tokens, want %d×%d", b, len(tok), len(tok[0]), B, 5+b)
				}
				for r := range B {
					// The device's rank against the host statement of top-k, on the device's score.
					if want := executor.TopK(scores[b][r], 5+b); !slices.Equal(tok[r], want) || !slices.Equal(chosen[b][r], want) {
						t.Fatalf("block %d row %d: device chose %v (reported %v), host top-k %v", b, r, tok[r], chosen[b][r], want)
					}
				}
				planned.Blocks[b].Modules[0].Action = hook.Reuse
				planned.Blocks[b].Modules[1] = hook.ModulePlan{Action: hook.Partial, Tokens: tok}

				in := probed["x_embed"]
				if b > 0 {
					in = probed[fmt.Sprintf("block_%d", b-1)]
				}
				attn := probed[fmt.Sprintf("block%d_attn", b)]
				for r := range B {
					want := make([]float64, N)
					var ss float64
					for n := range N {
						var xx, cc, xc float64
						for d := range D {
							i := (r*N+n)*D + d
							v, c := float64(in[i]+attn[i]), float64(cachedMLP[b][i])
							xx, cc, xc = xx+v*v, cc+c*c, xc+v*c
						}
						if kind == hook.ScoreNorm {
							want[n] = math.Sqrt(xx)
						} else {
							want[n] = 1 - xc/(math.Sqrt(xx)*math.Sqrt(cc))
						}
						ss += want[n] * want[n]
					}
					for n := range N {
						w := want[n] / math.Sqrt(ss)
						if e := math.Abs(float64(scores[b][r][n]) - w); e > 1e-5*math.Abs(w)+1e-6 {
							t.Fatalf("block %d row %d token %d: score %.7g, host %.7g", b, r, n, scores[b][r][n], w)
						}
					}
				}
			}
			want, err := m.Forward(x, ts2, y, dit.Options{Plan: planned, Cache: c2})
			if err != nil {
				t.Fatal(err)
			}
			if e := golden.MaxAbs(got, want); e != 0 {
				t.Errorf("deferred choice differs from the same tokens planned ahead by %.3g", e)
			}
		})
	}
	// A malformed selection is one error, not a panic.
	p := hook.FullPlan(l)
	c := hook.NewCache(l)
	if _, err := m.Forward(x, ts, y, dit.Options{Cache: c}); err != nil {
		t.Fatal(err)
	}
	p.Blocks[1].Modules[1] = hook.ModulePlan{Action: hook.Partial, Select: &hook.Selection{K: N + 1, Score: hook.ScoreNorm, StaleNorm: 1}}
	if _, err := m.Forward(x, ts2, y, dit.Options{Plan: p, Cache: c}); err == nil || !strings.Contains(err.Error(), "block 1 mlp: selection of") {
		t.Errorf("selection of more tokens than there are: err = %v", err)
	}
}
