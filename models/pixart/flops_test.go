package pixart

import (
	"slices"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

var _ hook.FLOPsCounter = (*Model)(nil)

// The counter on the tiny golden configuration, B = 4 rows (two captions under CFG), N = 64,
// C = 64, h = 4, L = 12, against the formulas written out term by term and literals by hand.
func TestBlockFLOPs(t *testing.T) {
	c := Config{InputSize: 16, PatchSize: 2, InChannels: 4, Hidden: 64, Depth: 4, Heads: 4, MLPRatio: 4,
		CaptionChannels: 32, MaxLength: 12, PredSigma: true, LeweiScale: 1}
	const B, N, C, h, L = 4, 64, 64, 4, 12
	norms := int64(2*B*N*C + B*C + 6*B*C*C)
	self := int64(6*B*N*C*C + B*N*C + 2*B*N*N*C + 5*B*h*N*N + 2*B*N*N*C + 2*B*N*C*C)
	cross := func(nq int64) int64 {
		return 2*B*nq*C*C + 4*B*L*C*C + B*nq*C + B*h*nq*L + 2*B*nq*L*C + 5*B*h*nq*L + 2*B*nq*L*C + 2*B*nq*C*C
	}
	mlp := func(n int64) int64 { return 16*B*n*C*C + 24*B*n*C }

	// By hand: norms 32,768 + 98,560 = 131,328; self-attention 6,291,456 + 16,384 + 2,097,152
	// + 327,680 + 2,097,152 + 2,097,152 = 12,926,976; cross-attention on 64 queries 2,097,152
	// + 786,432 + 16,384 + 12,288 + 393,216 + 61,440 + 393,216 + 2,097,152 = 5,857,280; MLP
	// 16,777,216 + 393,216 = 17,170,432; block 36,086,016.
	full := norms + self + cross(N) + mlp(N)
	if full != 36_086_016 {
		t.Fatalf("formula gives %d for a full block, hand count 36086016", full)
	}
	l := c.Layout()
	if got := c.BlockFLOPs(hook.FullPlan(l), B); !slices.Equal(got, []int64{full, full, full, full}) {
		t.Errorf("full plan: %v, want 4 × %d", got, full)
	}

	p := hook.FullPlan(l)
	sel := func(k int) hook.ModulePlan {
		return hook.ModulePlan{Action: hook.Partial, Select: &hook.Selection{K: k}}
	}
	// Block 1: attention reused, cross-attention on 5 chosen tokens, MLP on 10 planned ones.
	rows := make([][]int32, B)
	for r := range rows {
		rows[r] = []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	}
	p.Blocks[1].Modules = []hook.ModulePlan{{Action: hook.Reuse}, sel(5), {Action: hook.Partial, Tokens: rows}}
	// Block 2: k = 0 for both (the module call is skipped; its counters still age).
	p.Blocks[2].Modules = []hook.ModulePlan{{Action: hook.Reuse}, sel(0), sel(0)}
	// Block 3: every module predicted.
	p.Blocks[3].Modules = []hook.ModulePlan{{Action: hook.Predict}, {Action: hook.Predict}, {Action: hook.Predict}}
	// By hand, block 1: 131,328 + cross (163,840 + 786,432 + 1,280 + 960 + 30,720 + 4,800 + 30,720
	// + 163,840 = 1,182,592) + MLP (2,621,440 + 61,440 = 2,682,880) = 3,996,800.
	want := []int64{full, norms + cross(5) + mlp(10), norms, norms}
	if want[1] != 3_996_800 {
		t.Fatalf("formula gives %d for block 1, hand count 3996800", want[1])
	}
	if got := c.BlockFLOPs(p, B); !slices.Equal(got, want) {
		t.Errorf("partial plan: %v, want %v", got, want)
	}

	p = hook.FullPlan(l)
	p.Skip(hook.SpanSkip{Span: hook.Span{From: 0, To: 3}, Mode: hook.SkipReplace})
	if got := c.BlockFLOPs(p, B); !slices.Equal(got, []int64{0, 0, 0, 0}) {
		t.Errorf("whole stack skipped: %v, want all 0", got)
	}
}
