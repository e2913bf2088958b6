package methods_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/executor"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/dit"
)

// goldenActions mirrors testdata/caching/*_actions.json.
type goldenActions struct {
	Schedule []string `json:"schedule"`
	Calls    []struct {
		Call   int     `json:"call"`
		Step   int     `json:"step"`
		T      float64 `json:"t"`
		FLOPs  int64   `json:"flops"`
		Layers []struct {
			Layer  int      `json:"layer"`
			Type   string   `json:"type"`
			FLOPs  *int64   `json:"flops"`
			TUsed  *float64 `json:"T_used"`
			TAfter *float64 `json:"T_after"`
			Attn   struct {
				Action string `json:"action"`
				NFresh int    `json:"n_fresh"`
			} `json:"attn"`
			MLP struct {
				Action      string     `json:"action"`
				NFresh      int        `json:"n_fresh"`
				Ratio       *float64   `json:"ratio"`
				RatioF32    *float64   `json:"ratio_f32"`
				FreshRaw    [][]int32  `json:"fresh_raw"`
				FreshSorted [][]int32  `json:"fresh_sorted"`
				BoundaryGap []*float64 `json:"boundary_gap"`
				BlockGap    []*float64 `json:"block_gap"`
			} `json:"mlp"`
		} `json:"layers"`
	} `json:"calls"`
}

func readActions(t *testing.T, name string) goldenActions {
	t.Helper()
	data, err := os.ReadFile(golden.Path("caching/" + name + "_actions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenActions
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// runGolden replays a golden caching trace on its tiny model and checks the schedule, token
// counts, FLOPs (exact) and every state x_k (1e-5 of its scale).
func runGolden(t *testing.T, file, method string, params map[string]string, prepare func(methods.Method),
	choices func(call, layer int, scoreIn [][]float32, own [][]int32), deviceChoice bool) (*methods.Trace, goldenActions) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.Load(b, golden.Path("caching/weights.safetensors"), 4)
	if err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "caching/"+file+".safetensors")
	acts := readActions(t, file)
	sched, err := diffusion.NewSchedule(1000, "50")
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layout()
	pol, _, err := methods.New(method, params, methods.Env{Layout: l, Steps: 50, Rows: 4})
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(pol)
	}
	y := golden.I64(t, g, "y")
	tr := &methods.Trace{Method: method}
	var worst float64
	call := 0
	req := harness.Request{
		Sampler: diffusion.DDIM, Schedule: sched, CFGScale: 1.5, XInit: golden.F32(t, g, "x_init"), Labels: y[:2],
		Policy: pol, Cache: hook.NewCache(l), Tokens: true, DeviceChoice: deviceChoice}
	if choices != nil {
		req.Choices = func(block int, _ hook.Module, scoreIn [][]float32, own [][]int32) { choices(call, block, scoreIn, own) }
	}
	req.OnStep = func(s harness.StepInfo) error {
		call = s.Call + 1
		tr.Record(s.Call, s.Step, s.Time, s.Plan, pol.Notes(), m.BlockFLOPs(s.Plan, s.Rows), l.Tokens)
		want := golden.F32(t, g, fmt.Sprintf("x_%03d", s.Call))
		e := golden.RelToMax(s.X[:len(want)], want)
		worst = max(worst, e)
		if e > 1e-5 {
			t.Errorf("call %d: x rel error %.3g > 1e-5", s.Call, e)
		}
		return nil
	}
	_, err = harness.Sample(context.Background(), m, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: worst x_k rel error %.3g", file, worst)
	if !slices.Equal(tr.Schedule, acts.Schedule) {
		t.Errorf("schedule\n got %v\nwant %v", tr.Schedule, acts.Schedule)
	}
	codes := golden.I64(t, g, "actions")
	nfresh := golden.I64(t, g, "n_fresh")
	perStep := golden.I64(t, g, "flops_per_step")
	for k, call := range acts.Calls {
		got := tr.Calls[k]
		if got.Step != call.Step || got.T != call.T {
			t.Fatalf("call %d: step %d t %g, want %d %g", k, got.Step, got.T, call.Step, call.T)
		}
		if got.FLOPs != call.FLOPs || got.FLOPs != perStep[k] {
			t.Errorf("call %d: flops %d, want %d", k, got.FLOPs, call.FLOPs)
		}
		for li, gl := range call.Layers {
			ml := got.Layers[li]
			for mi, pair := range [][2]string{{ml.Attn.Action, gl.Attn.Action}, {ml.MLP.Action, gl.MLP.Action}} {
				if pair[0] != pair[1] {
					t.Errorf("call %d layer %d module %d: action %s, want %s", k, li, mi, pair[0], pair[1])
				}
				a, _ := hook.ParseAction(pair[0])
				if int64(a) != codes[(k*4+li)*2+mi] {
					t.Errorf("call %d layer %d module %d: code %d, golden tensor %d", k, li, mi, a, codes[(k*4+li)*2+mi])
				}
			}
			if ml.Attn.NFresh != gl.Attn.NFresh || ml.MLP.NFresh != gl.MLP.NFresh ||
				int64(ml.MLP.NFresh) != nfresh[(k*4+li)*2+1] || int64(ml.Attn.NFresh) != nfresh[(k*4+li)*2] {
				t.Errorf("call %d layer %d: n_fresh %d/%d, want %d/%d", k, li, ml.Attn.NFresh, ml.MLP.NFresh, gl.Attn.NFresh, gl.MLP.NFresh)
			}
			if gl.FLOPs != nil && *gl.FLOPs != ml.FLOPs {
				t.Errorf("call %d layer %d: flops %d, want %d", k, li, ml.FLOPs, *gl.FLOPs)
			}
			if gl.Type != "" && gl.Type != ml.Type {
				t.Errorf("call %d layer %d: type %q, want %q", k, li, ml.Type, gl.Type)
			}
			if gl.TUsed != nil && (ml.TUsed == nil || *ml.TUsed != *gl.TUsed || *ml.TAfter != *gl.TAfter) {
				t.Errorf("call %d layer %d: T_used/T_after %v/%v, want %v/%v", k, li, deref(ml.TUsed), deref(ml.TAfter), *gl.TUsed, *gl.TAfter)
			}
			if gl.MLP.Ratio != nil && (ml.MLP.Ratio == nil || *ml.MLP.Ratio != *gl.MLP.Ratio || *ml.MLP.RatioF32 != *gl.MLP.RatioF32) {
				t.Errorf("call %d layer %d: ratio %v/%v, want %v/%v", k, li, deref(ml.MLP.Ratio), deref(ml.MLP.RatioF32), *gl.MLP.Ratio, *gl.MLP.RatioF32)
			}
		}
	}
	return tr, acts
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func TestBaselineGolden(t *testing.T) { runGolden(t, "baseline", "none", nil, nil, nil, false) }

func TestFORAGolden(t *testing.T) {
	runGolden(t, "fora", "fora", map[string]string{"N": "3"}, nil, nil, false)
}

// TestToCaGolden runs ToCa teacher-forced with the golden token choices (README rule 3), checks
// its own choice — made on the device and reported beside the forced one — against fresh_sorted
// except at the golden near-ties (rule 4) and its device scores against score_in (3e-7 absolute).
func TestToCaGolden(t *testing.T) {
	// The pure-Go backend ranks attention scores on the host; DeviceChoice ranks them in the graph.
	for _, device := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "graph"}[device], func(t *testing.T) { tocaGolden(t, device) })
	}
}

func tocaGolden(t *testing.T, device bool) {
	acts := readActions(t, "toca")
	g := golden.Open(t, "caching/toca.safetensors")
	var scoreErr float64
	var scored int
	owns := map[[2]int][][]int32{}
	prepare := func(m methods.Method) {
		methods.SetForce(m, func(call, layer int) [][]int32 { return acts.Calls[call].Layers[layer].MLP.FreshRaw })
	}
	choices := func(call, layer int, in [][]float32, own [][]int32) {
		owns[[2]int{call, layer}] = methods.SortedRows(own)
		name := fmt.Sprintf("score_in_%03d_l%d", call, layer)
		if _, ok := g.Tensors[name]; !ok {
			return // k = 0: the golden stores no score
		}
		want := golden.F32(t, g, name)
		for r, row := range in {
			scoreErr = max(scoreErr, golden.MaxAbs(row, want[r*256:(r+1)*256]))
		}
		scored++
	}
	runGolden(t, "toca", "toca", map[string]string{"N": "3", "ratio": "0.07", "scheduler": "ToCa-ddim50"}, prepare, choices, device)
	if scored != 91 {
		t.Errorf("compared %d score vectors, the golden holds 91", scored)
	}
	if scoreErr > 3e-7 {
		t.Errorf("score_in: max abs error %.3g > 3e-7", scoreErr)
	}
	t.Logf("score_in max abs error %.3g over %d partial selections", scoreErr, scored)
	nearTie := func(gaps ...*float64) bool {
		for _, g := range gaps {
			if g != nil && *g < 3e-7 {
				return true
			}
		}
		return false
	}
	var mismatches, excused int
	for k, call := range acts.Calls {
		for li, gl := range call.Layers {
			if gl.MLP.Action != "partial" || gl.MLP.NFresh == 0 {
				continue
			}
			own := owns[[2]int{k, li}]
			if len(own) != 4 {
				t.Fatalf("call %d layer %d: no own choice reported", k, li)
			}
			for r := range own {
				if slices.Equal(own[r], gl.MLP.FreshSorted[r]) {
					continue
				}
				if nearTie(gl.MLP.BoundaryGap[r], gl.MLP.BlockGap[r]) {
					excused++
					continue
				}
				mismatches++
				t.Errorf("call %d layer %d row %d: own selection differs from fresh_sorted", k, li, r)
			}
		}
	}
	t.Logf("own selection: %d rows differ, %d of them at golden near-ties", mismatches+excused, excused)
}

// The selection rule alone, on the golden scores, as the host statement (executor.GridBonus,
// TopK) and as the device runs it (executor.Choose): bonus bit for bit, top-k = fresh_sorted.
func TestSelectionRuleGolden(t *testing.T) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	l := hook.Layout{Tokens: 256, GridH: 16, GridW: 16}
	acts := readActions(t, "toca")
	g := golden.Open(t, "caching/toca.safetensors")
	n := 0
	for k, call := range acts.Calls {
		for li, gl := range call.Layers {
			name := fmt.Sprintf("%03d_l%d", k, li)
			if _, ok := g.Tensors["score_in_"+name]; !ok {
				continue
			}
			in, want := golden.F32(t, g, "score_in_"+name), golden.F32(t, g, "score_"+name)
			for r := range 4 {
				s := executor.GridBonus(in[r*256:(r+1)*256], 16, 16, 2, 0.6)
				if !slices.Equal(s, want[r*256:(r+1)*256]) {
					t.Errorf("call %d layer %d row %d: grid bonus differs from golden score", k, li, r)
				}
				top := executor.TopK(s, gl.MLP.NFresh)
				slices.Sort(top)
				if !slices.Equal(top, gl.MLP.FreshSorted[r]) {
					t.Errorf("call %d layer %d row %d: top-%d differs from fresh_sorted", k, li, r, gl.MLP.NFresh)
				}
			}
			// The device's rule on the same scores: the bonus bit for bit, the same top-k.
			rows := make([][]float32, 4)
			for r := range rows {
				rows[r] = in[r*256 : (r+1)*256]
			}
			scored, fresh, err := executor.Choose(b, l, hook.Selection{K: gl.MLP.NFresh, Grid: 2, Beta: 0.6}, rows)
			if err != nil {
				t.Fatal(err)
			}
			for r := range 4 {
				if !slices.Equal(scored[r], want[r*256:(r+1)*256]) {
					t.Errorf("call %d layer %d row %d: device grid bonus differs from golden score", k, li, r)
				}
				if !slices.Equal(methods.SortedRows(fresh)[r], gl.MLP.FreshSorted[r]) {
					t.Errorf("call %d layer %d row %d: device top-%d differs from fresh_sorted", k, li, r, gl.MLP.NFresh)
				}
			}
			n++
		}
	}
	if n != 91 {
		t.Errorf("checked %d selections, want 91", n)
	}
}
