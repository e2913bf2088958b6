package methods

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cachebench/cachebench/harness/hook"
)

// Trace is the per-call action log of a run, in the format of testdata/caching/*_actions.json
// (same field names and action words), so a run can be diffed against a reference implementation.
type Trace struct {
	Method       string         `json:"method"`
	Params       map[string]any `json:"params"`
	NumSteps     int            `json:"num_steps"`
	Sampler      string         `json:"sampler"`
	CFGScale     float64        `json:"cfg_scale"`
	Labels       []int64        `json:"labels"`
	TokensPerRow int            `json:"tokens_per_row"`
	BatchRows    int            `json:"batch_rows"`
	TimestepMap  []int64        `json:"timestep_map"`
	TotalFLOPs   int64          `json:"total_flops"`
	Schedule     []string       `json:"schedule"`
	Calls        []TraceCall    `json:"calls"`
}

// TraceCall is one model call.
type TraceCall struct {
	Call   int          `json:"call"`
	Step   int          `json:"step"`
	T      float64      `json:"t"` // the model's timestep (fractional under DPM-Solver)
	FLOPs  int64        `json:"flops"`
	Layers []TraceLayer `json:"layers"`
}

// TraceLayer is one block of one call.
type TraceLayer struct {
	Layer  int          `json:"layer"`
	Type   string       `json:"type"`
	FLOPs  int64        `json:"flops"`
	TUsed  *float64     `json:"T_used,omitempty"`
	TAfter *float64     `json:"T_after,omitempty"`
	Attn   TraceModule  `json:"attn"`
	Cross  *TraceModule `json:"cross,omitempty"` // models with a cross-attention (PixArt-α)
	MLP    TraceModule  `json:"mlp"`
}

// TraceModule is one module of one block of one call.
type TraceModule struct {
	Action      string    `json:"action"`
	NFresh      int       `json:"n_fresh"`
	Ratio       *float64  `json:"ratio,omitempty"`
	RatioF32    *float64  `json:"ratio_f32,omitempty"`
	FreshRaw    [][]int32 `json:"fresh_raw,omitempty"`
	FreshSorted [][]int32 `json:"fresh_sorted,omitempty"`
}

// Record appends one call to the trace from the plan that ran, the method's notes and the
// model's per-block FLOPs.
// Blocks are [attention, MLP] (DiT) or [attention, cross-attention, MLP] (PixArt-α).
func (tr *Trace) Record(call, step int, t float64, p *hook.Plan, notes []Note, blockFLOPs []int64, tokens int) {
	tc := TraceCall{Call: call, Step: step, T: t}
	var letters strings.Builder
	for b, bp := range p.Blocks {
		var n Note
		if b < len(notes) {
			n = notes[b]
		}
		tl := TraceLayer{Layer: b, Type: n.Type, FLOPs: blockFLOPs[b], TUsed: n.TUsed, TAfter: n.TAfter}
		last := len(bp.Modules) - 1
		tl.Attn = traceModule(bp.Modules[0], tokens)
		tl.MLP = traceModule(bp.Modules[last], tokens)
		if bp.Modules[last].Action == hook.Partial {
			tl.MLP.Ratio, tl.MLP.RatioF32 = n.Ratio, n.RatioF32
		}
		if last == 2 {
			cross := traceModule(bp.Modules[1], tokens)
			if bp.Modules[1].Action == hook.Partial {
				cross.Ratio, cross.RatioF32 = n.CrossRatio, n.CrossRatioF32
			}
			tl.Cross = &cross
		}
		tc.FLOPs += blockFLOPs[b]
		letters.WriteByte(gateLetter(p.Gate, b, scheduleLetter(bp)))
		tc.Layers = append(tc.Layers, tl)
	}
	tr.TotalFLOPs += tc.FLOPs
	tr.Schedule = append(tr.Schedule, letters.String())
	tr.Calls = append(tr.Calls, tc)
}

func traceModule(mp hook.ModulePlan, tokens int) TraceModule {
	m := TraceModule{Action: mp.Action.String()}
	switch mp.Action {
	case hook.Full:
		m.NFresh = tokens
	case hook.Partial:
		m.NFresh = mp.Fresh()
		m.FreshRaw = mp.Tokens
		m.FreshSorted = sortedRows(mp.Tokens)
	}
	return m
}

// scheduleLetter is the golden files' one-letter block summary: F full, P partial, R reuse,
// S skip, T taylor (and, for gated blocks as executed, M: some rows skipped; see gateLetter).
func scheduleLetter(bp hook.BlockPlan) byte {
	switch bp.Modules[len(bp.Modules)-1].Action {
	case hook.Full:
		return 'F'
	case hook.Partial:
		return 'P'
	case hook.Skip:
		return 'S'
	case hook.Predict:
		return 'T'
	}
	return 'R'
}

// gateLetter is the letter of a block a gate covered, as executed: S when every row skipped the
// range, M when some did (per-sample decisions), the plan's letter otherwise.
func gateLetter(g *hook.Gate, b int, planned byte) byte {
	if g == nil || g.Skipped == nil || b < g.Span.From || b > g.Span.To {
		return planned
	}
	n := 0
	for _, s := range g.Skipped {
		if s {
			n++
		}
	}
	switch {
	case n == len(g.Skipped):
		return 'S'
	case n > 0:
		return 'M'
	}
	return planned
}

func sortedRows(rows [][]int32) [][]int32 {
	out := make([][]int32, len(rows))
	for i, r := range rows {
		out[i] = slices.Clone(r)
		slices.Sort(out[i])
	}
	return out
}

// Write saves the trace as indented JSON.
func (tr *Trace) Write(path string) error {
	data, err := json.MarshalIndent(tr, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	return nil
}
