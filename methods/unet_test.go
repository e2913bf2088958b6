package methods

import (
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/hook"
)

// tinyUNet is the layout of the golden tiny SD UNet (testdata/sd-unet): 16×16 latents, levels
// of 256 and 64 tokens, transformers in input_blocks.1 and .3, the middle block and every output block.
func tinyUNet() hook.Layout {
	l := hook.Layout{Depth: 9, Modules: []hook.Module{hook.Attn, hook.CrossAttn, hook.MLP}, Tokens: 256, GridH: 16, GridW: 16, Hidden: 32, Heads: 4}
	for _, b := range []struct {
		name string
		side int
	}{{"input_blocks.0", 0}, {"input_blocks.1", 16}, {"input_blocks.2", 0}, {"input_blocks.3", 8}, {"middle_block", 8},
		{"output_blocks.0", 8}, {"output_blocks.1", 8}, {"output_blocks.2", 16}, {"output_blocks.3", 16}} {
		l.Blocks = append(l.Blocks, hook.BlockShape{Name: b.name, Tokens: b.side * b.side, GridH: b.side, GridW: b.side})
	}
	return l
}

// ran lists the blocks a plan runs.
func ran(p *hook.Plan) []int {
	var out []int
	for b := range p.Blocks {
		if _, ok := p.SkipAt(b); !ok {
			out = append(out, b)
		}
	}
	return out
}

// pruned lists the blocks whose self-attention prunes.
func pruned(p *hook.Plan) []int {
	var out []int
	for b, bp := range p.Blocks {
		if bp.Modules[0].Action == hook.Prune {
			out = append(out, b)
		}
	}
	return out
}

func newUNetMethod(t *testing.T, name string, raw map[string]string, steps int) Method {
	t.Helper()
	m, _, err := New(name, raw, Env{Layout: tinyUNet(), Steps: steps, Rows: 4, Seed: 3, Samples: []int{7, 8}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// DeepCache: full at c mod N = 0; otherwise the branch's input blocks and their mirrors run, the
// middle block and everything deeper reuse their outputs; every block that runs keeps its output.
func TestDeepCachePlans(t *testing.T) {
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8}
	for _, c := range []struct {
		branch string
		want   []int
	}{{"0", []int{0, 8}}, {"1", []int{0, 1, 7, 8}}, {"2", []int{0, 1, 2, 6, 7, 8}}} {
		m := newUNetMethod(t, "deepcache", map[string]string{"N": "3", "branch": c.branch}, 10)
		for call := range 7 {
			p, err := m.Plan(call, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if call%3 == 0 {
				want = all
			}
			if got := ran(p); !slices.Equal(got, want) {
				t.Errorf("branch %s call %d: runs blocks %v, want %v", c.branch, call, got, want)
			}
			if len(p.Keep) != len(want) {
				t.Errorf("branch %s call %d: keeps %d blocks, want the %d that run", c.branch, call, len(p.Keep), len(want))
			}
		}
	}
	if _, _, err := New("deepcache", map[string]string{"branch": "3"}, Env{Layout: tinyUNet(), Steps: 10, Rows: 4}); err == nil || !strings.Contains(err.Error(), "branch 3") {
		t.Errorf("branch deeper than the UNet: error %v", err)
	}
}

// DaTo's released strategy on its first calls (the golden's: S = 0,1,1,1,1,1,11,…): call 0 full
// with the three full-resolution transformers pruned, call 1 runs nothing (only the head), calls
// 2–6 run input_blocks.0, the middle block and output_blocks.3 (pruned), call 7 is full again.
func TestDaToPlans(t *testing.T) {
	for call, want := range map[int][2][]int{
		0: {{0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 7, 8}}, 1: {nil, nil}, 2: {{0, 4, 8}, {8}}, 6: {{0, 4, 8}, {8}},
		7: {{0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 7, 8}},
	} {
		m := newUNetMethod(t, "dato", nil, 10)
		var p *hook.Plan
		for c := 0; c <= call; c++ {
			var err error
			if p, err = m.Plan(c, 0); err != nil {
				t.Fatal(err)
			}
		}
		if got := ran(p); !slices.Equal(got, want[0]) {
			t.Errorf("call %d: runs %v, want %v", call, got, want[0])
		}
		if got := pruned(p); !slices.Equal(got, want[1]) {
			t.Errorf("call %d: prunes %v, want %v", call, got, want[1])
		}
		if !p.Dynamics {
			t.Errorf("call %d: DaTo keeps the output's dynamics", call)
		}
		for _, b := range pruned(p) {
			pr := p.Blocks[b].Modules[0].Prune
			if pr.K != 102 || !pr.Pairs || len(pr.Noise) != 4 || len(pr.Noise[0]) != 256 || (pr.Gamma != 0.1 && pr.Gamma != -0.1) {
				t.Errorf("call %d block %d: rule %+v, want 102 of 256 pruned, paired, 4 noise rows, γ = ±0.1", call, b, pr)
			}
		}
	}
	// Draws depend on (seed, sample, call, block) only: the same image in another batch slot
	// draws the same noise; the two CFG halves draw differently.
	a := newUNetMethod(t, "dato", nil, 10)
	b, _, err := New("dato", nil, Env{Layout: tinyUNet(), Steps: 10, Rows: 2, Seed: 3, Samples: []int{8}})
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Plan(0, 0)
	pb, _ := b.Plan(0, 0)
	na, nb := pa.Blocks[1].Modules[0].Prune.Noise, pb.Blocks[1].Modules[0].Prune.Noise
	if !slices.Equal(na[1], nb[0]) || !slices.Equal(na[3], nb[1]) || slices.Equal(na[1], na[3]) {
		t.Error("noise of sample 8 depends on its batch, or its CFG halves draw alike")
	}
	if pa.Blocks[1].Modules[0].Prune.Gamma != pb.Blocks[1].Modules[0].Prune.Gamma {
		t.Error("the coin flip depends on the batch")
	}
	if _, _, err := New("dato", nil, Env{Layout: tinyUNet(), Steps: 60, Rows: 4}); err == nil || !strings.Contains(err.Error(), "strategy=uniform") {
		t.Errorf("60 steps under the 50-entry released strategy: error %v", err)
	}
	if _, _, err := New("dato", nil, Env{Layout: tinyUNet(), Steps: 10, Rows: 3}); err == nil || !strings.Contains(err.Error(), "align_cfg") {
		t.Errorf("odd batch with align_cfg: error %v", err)
	}
}

// ToMeSD merges in the full-resolution transformers at every call (max_downsample 1), or at the
// half-resolution ones too (2), r = ⌊N·ratio⌋, one destination per cell.
func TestToMeSDPlans(t *testing.T) {
	for down, want := range map[string][]int{"1": {1, 7, 8}, "2": {1, 3, 4, 5, 6, 7, 8}} {
		m := newUNetMethod(t, "tomesd", map[string]string{"max_downsample": down, "ratio": "0.5"}, 10)
		p, err := m.Plan(2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := pruned(p); !slices.Equal(got, want) || len(ran(p)) != 9 {
			t.Errorf("max_downsample %s: merges in %v (runs %d blocks), want %v (all 9)", down, got, len(ran(p)), want)
		}
		pr := p.Blocks[1].Modules[0].Prune
		if pr.Rule != hook.PruneMerge || pr.K != 128 || len(pr.Cells) != 64 {
			t.Errorf("merge rule %+v, want 128 of 256 merged into 64 cells", pr)
		}
	}
}

// Methods say which models they plan: stack methods refuse the UNet and UNet methods a stack.
func TestMethodsFit(t *testing.T) {
	for _, name := range []string{"fora", "toca", "taylorseer"} {
		if _, _, err := New(name, nil, Env{Layout: tinyUNet(), Steps: 10, Rows: 4}); err == nil || !strings.Contains(err.Error(), "does not apply") {
			t.Errorf("%s on a UNet: error %v", name, err)
		}
	}
	stack := hook.Layout{Depth: 4, Modules: []hook.Module{hook.Attn, hook.MLP}, Tokens: 64, GridH: 8, GridW: 8}
	for _, name := range []string{"dato", "deepcache", "tomesd"} {
		if _, _, err := New(name, nil, Env{Layout: stack, Steps: 10, Rows: 4}); err == nil || !strings.Contains(err.Error(), "does not apply") {
			t.Errorf("%s on a DiT: error %v", name, err)
		}
	}
	for _, name := range []string{"none", "steps"} {
		if _, _, err := New(name, nil, Env{Layout: tinyUNet(), Steps: 10, Rows: 4}); err != nil {
			t.Errorf("%s on a UNet: %v", name, err)
		}
	}
}

// Parameters that cannot be carried out are refused before any compute: cells that do not tile a
// pruned grid, a ratio that would drop base tokens.
func TestUNetMethodParams(t *testing.T) {
	for _, c := range []struct {
		method string
		raw    map[string]string
		want   string
	}{
		{"dato", map[string]string{"sx": "3"}, "do not tile"},
		{"tomesd", map[string]string{"sx": "1", "sy": "1", "ratio": "0.1"}, "at most 0 can go"},
		{"dato", map[string]string{"ratio": "0.9"}, "want a number in"},
	} {
		if _, _, err := New(c.method, c.raw, Env{Layout: tinyUNet(), Steps: 10, Rows: 4}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want one saying %q", c.method, c.raw, err, c.want)
		}
	}
}
