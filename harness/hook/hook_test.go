package hook

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func TestPlanValidate(t *testing.T) {
	l := Layout{Depth: 3, Modules: []Module{Attn, MLP}, Tokens: 4, GridH: 2, GridW: 2}
	c := NewCache(l)
	full := FullPlan(l)
	if err := full.Validate(l, nil, 2); err != nil {
		t.Fatalf("full plan: %v", err)
	}
	x := tensors.FromFlatDataAndDimensions(make([]float32, 8), 2, 4, 1)
	c.SetOut(1, 1, x)
	partial := func(rows [][]int32) *Plan {
		p := FullPlan(l)
		p.Blocks[1].Modules[1] = ModulePlan{Action: Partial, Tokens: rows}
		return p
	}
	skip := FullPlan(l)
	skip.Skips = []SpanSkip{{Span: Span{0, 1}, Mode: SkipReplace}}
	for _, c2 := range []struct {
		p    *Plan
		want string
	}{
		{&Plan{}, "plan has 0 blocks"},
		{func() *Plan { p := FullPlan(l); p.Blocks[0].Modules[0].Action = Reuse; return p }(), "block 0 attn: reuse needs a cached output"},
		{partial([][]int32{{0}}), "token lists for 1 rows"},
		{partial([][]int32{{0, 1}, {2}}), "row 1 selects 1 tokens"},
		{partial([][]int32{{0, 4}, {1, 2}}), "out of range"},
		{partial([][]int32{{1, 1}, {1, 2}}), "repeated"},
		{skip, "cached input and output"},
		{func() *Plan { p := FullPlan(l); p.Blocks[2].Modules[0].Action = Predict; return p }(), "predict needs a series"},
		{func() *Plan {
			p := FullPlan(l)
			p.Blocks[2].Modules[0] = ModulePlan{Action: Predict, Series: &Series{Scale: []float32{1}, Power: []float32{1}}}
			return p
		}(), "predict from 1 history terms, and the cache holds 0"},
		{func() *Plan {
			p := FullPlan(l)
			p.Blocks[2].Modules[0].History = &History{Step: 1, Orders: 2}
			return p
		}(), "needs a cache holding 1 terms"},
		{func() *Plan {
			p := partial(nil)
			p.Blocks[1].Modules[1].Select = &Selection{K: 5, Score: ScoreNorm, StaleNorm: 1}
			return p
		}(), "selection of 5 tokens out of 4"},
		{func() *Plan {
			p := partial(nil)
			p.Blocks[1].Modules[1].Select = &Selection{K: 1, Score: ScoreRandom, StaleNorm: 1}
			return p
		}(), "random score for 0 rows"},
		{func() *Plan {
			p := partial(nil)
			p.Blocks[1].Modules[1].Select = &Selection{K: 1, Score: ScoreNorm}
			return p
		}(), "staleness normaliser 0"},
		{func() *Plan { p := FullPlan(l); p.Blocks[1].Refresh = ScoreNorm; return p }(), "cannot refresh a norm score"},
		{partial(nil), "partial without planned tokens or a selection rule"},
	} {
		err := c2.p.Validate(l, c, 2)
		if err == nil || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("want error containing %q, got %v", c2.want, err)
		}
	}
	if err := partial([][]int32{{0, 3}, {1, 2}}).Validate(l, c, 2); err != nil {
		t.Errorf("valid partial plan: %v", err)
	}
	deferred := partial(nil)
	deferred.Blocks[1].Modules[1].Select = &Selection{K: 2, Score: ScoreSimilarity, StaleNorm: 3, Grid: 1, Beta: 0.6}
	if err := deferred.Validate(l, c, 2); err != nil {
		t.Errorf("valid device choice: %v", err)
	}
	c.SetSpan(Span{0, 1}, x, x)
	for b := 0; b <= 1; b++ {
		for m := range skip.Blocks[b].Modules {
			skip.Blocks[b].Modules[m].Action = Skip
		}
	}
	if err := skip.Validate(l, c, 2); err != nil {
		t.Errorf("valid skip: %v", err)
	}
	skip.Blocks[2].Modules[0].Action = Skip
	if err := skip.Validate(l, c, 2); err == nil || !strings.Contains(err.Error(), "not in a skipped range") {
		t.Errorf("skip action outside the range: %v", err)
	}
	c.Reset()
	if c.Out(1, 1) != nil || c.Span(Span{0, 1}) != nil {
		t.Error("Reset left cached tensors")
	}
}

func TestActionNames(t *testing.T) {
	for a := Full; a <= Prune; a++ {
		got, err := ParseAction(a.String())
		if err != nil || got != a {
			t.Errorf("%v round trip: %v %v", a, got, err)
		}
	}
	if _, err := ParseAction("nope"); err == nil {
		t.Error("unknown action: want an error")
	}
}

// Cache memory counts every tensor once, by what it holds.
func TestCacheBytes(t *testing.T) {
	l := Layout{Depth: 2, Modules: []Module{Attn, MLP}, Tokens: 4, GridH: 2, GridW: 2}
	c := NewCache(l)
	if b := c.Bytes(); b["total"] != 0 || len(b) != 1 {
		t.Fatalf("empty cache: %v", b)
	}
	out := tensors.FromFlatDataAndDimensions(make([]float32, 2*4*3), 2, 4, 3) // 96 bytes
	c.SetOut(0, 0, out)
	c.SetOut(1, 1, tensors.FromFlatDataAndDimensions(make([]float32, 2*4*3), 2, 4, 3))
	c.SetStale(0, 1, tensors.FromFlatDataAndDimensions(make([]float32, 8), 2, 4)) // 32
	c.SetHistory(1, 0, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(make([]float32, 24), 2, 4, 3)})
	c.SetSpan(Span{0, 1}, out, tensors.FromFlatDataAndDimensions(make([]float32, 24), 2, 4, 3)) // In is out: counted once
	b := c.Bytes()
	want := map[string]int64{"attn": 96, "mlp": 96, "token_state": 32, "history": 96, "ranges": 96, "total": 416}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("%s: %d bytes, want %d (all: %v)", k, b[k], v, b)
		}
	}
	c.Reset()
	if b := c.Bytes(); b["total"] != 0 {
		t.Errorf("after Reset: %v", b)
	}
}
