package methods_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/pixart"
)

// pixartModule mirrors one module of testdata/pixart-caching/toca_actions.json.
type pixartModule struct {
	Action      string     `json:"action"`
	NFresh      int        `json:"n_fresh"`
	Ratio       *float64   `json:"ratio"`
	RatioF32    *float64   `json:"ratio_f32"`
	FreshRaw    [][]int32  `json:"fresh_raw"`
	FreshSorted [][]int32  `json:"fresh_sorted"`
	BoundaryGap []*float64 `json:"boundary_gap"`
	BlockGap    []*float64 `json:"block_gap"`
}

type pixartActions struct {
	Schedule []string `json:"schedule"`
	Calls    []struct {
		Step   int     `json:"step"`
		T      float64 `json:"t"`
		Layers []struct {
			Type   string       `json:"type"`
			TUsed  *float64     `json:"T_used"`
			TAfter *float64     `json:"T_after"`
			Attn   pixartModule `json:"attn"`
			Cross  pixartModule `json:"cross"`
			MLP    pixartModule `json:"mlp"`
		} `json:"layers"`
	} `json:"calls"`
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// TestToCaPixArtGolden replays the official PixArt-alpha-ToCa trace (testdata/pixart-caching) on
// the tiny golden PixArt-α with DPM-Solver++ 20 steps and CFG 4.5, teacher-forced with the golden
// token choices: schedule, actions, n_fresh, T and ratios exact, x_k within 1e-5, model
// and the rule's own choice equal to fresh_sorted (no near-ties here).
func TestToCaPixArtGolden(t *testing.T) {
	for _, forced := range []bool{true, false} {
		t.Run(map[bool]string{true: "teacher-forced", false: "own choice"}[forced], func(t *testing.T) { tocaPixArtGolden(t, forced) })
	}
}

func tocaPixArtGolden(t *testing.T, forced bool) {
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := pixart.Load(b, golden.Path("pixart/weights.safetensors"), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(golden.Path("pixart-caching/toca_actions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var acts pixartActions
	if err := json.Unmarshal(data, &acts); err != nil {
		t.Fatal(err)
	}
	g := golden.Open(t, "pixart-caching/toca.safetensors")
	mask := golden.I64(t, g, "mask")
	L, C := m.MaxLength, m.CaptionChannels
	caps := &pixart.Captions{Features: golden.F32(t, g, "y_cond"), Lengths: make([]int, 2)}
	for r := range 2 {
		for _, v := range mask[r*L : (r+1)*L] {
			caps.Lengths[r] += int(v)
		}
	}
	// The golden's null caption is the weights' y_embedding repeated: the model's own.
	if e := golden.MaxAbs(golden.F32(t, g, "y_null")[:L*C], golden.F32(t, g, "y_null")[L*C:]); e != 0 {
		t.Fatalf("golden null captions differ between rows (%g)", e)
	}
	if err := m.SetCaptions(caps); err != nil {
		t.Fatal(err)
	}
	solver, err := diffusion.NewDPMSolver(20, 2)
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layout()
	pol, _, err := methods.New("toca-pixart", map[string]string{"N": "3", "ratio": "0.30"}, methods.Env{Layout: l, Steps: 20, Rows: 4, Samples: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	module := map[hook.Module]func(call, layer int) pixartModule{
		hook.CrossAttn: func(c, li int) pixartModule { return acts.Calls[c].Layers[li].Cross },
		hook.MLP:       func(c, li int) pixartModule { return acts.Calls[c].Layers[li].MLP },
	}
	// The harness lays CFG rows out [cond | null], the official wrapper [uncond | cond]: golden
	// row r is harness row (r + 2) mod 4.
	swap := func(rows [][]int32) [][]int32 { return [][]int32{rows[2], rows[3], rows[0], rows[1]} }
	if forced {
		methods.SetPixArtForce(pol, func(call, layer int, mod hook.Module) [][]int32 { return swap(module[mod](call, layer).FreshRaw) })
	}
	own := map[[3]int][][]int32{}
	var scoreErr float64
	var scored int
	call := 0
	var worst float64
	tr := &methods.Trace{Method: "toca-pixart"}
	req := harness.Request{Sampler: diffusion.DPMSolverPP, Solver: solver, CFGScale: 4.5, XInit: golden.F32(t, g, "x_init"),
		Labels: []int64{0, 1}, Policy: pol, Cache: hook.NewCache(l), Tokens: true,
		Choices: func(block int, mod hook.Module, scoreIn [][]float32, chosen [][]int32) {
			own[[3]int{call, block, int(mod)}] = methods.SortedRows(swap(chosen))
			name := fmt.Sprintf("score_in_%03d_l%d_%s", call, block, map[hook.Module]string{hook.CrossAttn: "cross", hook.MLP: "mlp"}[mod])
			if _, ok := g.Tensors[name]; !ok {
				return // k = 0: the golden stores no score
			}
			want := golden.F32(t, g, name)
			n := len(want) / 4
			for r, gr := range []int{2, 3, 0, 1} {
				scoreErr = max(scoreErr, golden.MaxAbs(scoreIn[gr], want[r*n:(r+1)*n]))
			}
			scored++
		}}
	req.OnStep = func(s harness.StepInfo) error {
		call = s.Call + 1
		tr.Record(s.Call, s.Call, s.Time, s.Plan, pol.Notes(), make([]int64, l.Depth), l.Tokens)
		want := golden.F32(t, g, fmt.Sprintf("x_%03d", s.Call))
		e := golden.RelToMax(s.X[:len(want)], want)
		worst = max(worst, e)
		if e > 1e-5 {
			t.Errorf("call %d: x rel error %.3g > 1e-5", s.Call, e)
		}
		return nil
	}
	if _, err := harness.Sample(context.Background(), m, req); err != nil {
		t.Fatal(err)
	}
	t.Logf("worst x_k relative error %.3g; score_in max abs error %.3g over %d selections", worst, scoreErr, scored)
	if want := countPrefix(g.Names(), "score_in_"); scored != want {
		t.Errorf("compared %d score vectors, the golden holds %d", scored, want)
	}
	if scoreErr > 3e-7 {
		t.Errorf("score_in: max abs error %.3g > 3e-7", scoreErr)
	}
	if !slices.Equal(tr.Schedule, acts.Schedule) {
		t.Errorf("schedule\n got %v\nwant %v", tr.Schedule, acts.Schedule)
	}
	for k, gc := range acts.Calls {
		got := tr.Calls[k]
		for li, gl := range gc.Layers {
			ml := got.Layers[li]
			if ml.Type != gl.Type || *ml.TUsed != *gl.TUsed || *ml.TAfter != *gl.TAfter {
				t.Errorf("call %d layer %d: type %s T %g→%g, want %s %g→%g", k, li, ml.Type, *ml.TUsed, *ml.TAfter, gl.Type, *gl.TUsed, *gl.TAfter)
			}
			if ml.Cross == nil {
				t.Fatalf("call %d layer %d: no cross-attention in the trace", k, li)
			}
			for _, pair := range []struct {
				name      string
				got       methods.TraceModule
				want      pixartModule
				mod       hook.Module
				partialOK bool
			}{{"attn", ml.Attn, gl.Attn, hook.Attn, false}, {"cross", *ml.Cross, gl.Cross, hook.CrossAttn, true}, {"mlp", ml.MLP, gl.MLP, hook.MLP, true}} {
				if pair.got.Action != pair.want.Action || pair.got.NFresh != pair.want.NFresh {
					t.Errorf("call %d layer %d %s: %s/%d, want %s/%d", k, li, pair.name, pair.got.Action, pair.got.NFresh, pair.want.Action, pair.want.NFresh)
				}
				if pair.want.Action != "partial" {
					continue
				}
				if *pair.got.Ratio != *pair.want.Ratio || *pair.got.RatioF32 != *pair.want.RatioF32 {
					t.Errorf("call %d layer %d %s: ratio %v/%v, want %v/%v", k, li, pair.name, *pair.got.Ratio, *pair.got.RatioF32, *pair.want.Ratio, *pair.want.RatioF32)
				}
				if pair.want.NFresh == 0 {
					continue
				}
				mine := own[[3]int{k, li, int(pair.mod)}]
				for r := range pair.want.FreshSorted {
					if len(mine) != 4 || !slices.Equal(mine[r], pair.want.FreshSorted[r]) {
						t.Errorf("call %d layer %d %s row %d: own selection differs from fresh_sorted", k, li, pair.name, r)
						break
					}
				}
			}
		}
	}
}
