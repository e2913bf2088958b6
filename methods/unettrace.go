package methods

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/cachebench/cachebench/harness/hook"
)

// UNetTrace is the per-call log of a UNet run in the format of testdata/dato/actions.json: per
// call whether every block ran and each block's "run" or "cached" under the reference's names
// (input_blocks[id i], mid_block[id 0], output_blocks[id k] with DaTo's ids), and the prune events.
type UNetTrace struct {
	names []string
	Calls []UNetCall      `json:"calls"`
	Prune []UNetPruneStep `json:"prune"`
}

// UNetCall is one UNet call.
type UNetCall struct {
	Call   int               `json:"call"`
	T      int64             `json:"t"`
	Full   bool              `json:"full"`
	Blocks map[string]string `json:"blocks"`
	Pruned int               `json:"pruned_blocks"`
}

// UNetPruneStep is one prune event.
type UNetPruneStep struct {
	Index       int     `json:"index"`
	Call        int     `json:"call"`
	T           int64   `json:"t"`
	Block       string  `json:"block"`
	NumPrune    int     `json:"num_prune"`
	SignDraw    float64 `json:"sign_draw"`
	GammaUsed   float64 `json:"gamma_used"`
	HasDynamics bool    `json:"has_dynamics"`
}

// NewUNetTrace starts the trace of a UNet of this layout.
func NewUNetTrace(l hook.Layout) (*UNetTrace, error) {
	ids, _, _, err := blockIDs(l)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	tr := &UNetTrace{}
	for b, bs := range l.Blocks {
		kind, _, _ := strings.Cut(bs.Name, ".")
		if kind == "middle_block" {
			kind = "mid_block" // the helper's name for it
		}
		tr.names = append(tr.names, fmt.Sprintf("%s[id %d]", kind, ids[b]))
	}
	return tr, nil
}

// Record appends a call: the plan that ran and the method's prune events so far (Events).
func (tr *UNetTrace) Record(call int, t int64, p *hook.Plan, events []PruneEvent) {
	c := UNetCall{Call: call, T: t, Full: true, Blocks: map[string]string{}}
	for b, name := range tr.names {
		c.Blocks[name] = "run"
		if p != nil {
			if _, ok := p.SkipAt(b); ok {
				c.Blocks[name], c.Full = "cached", false
			}
			for _, mp := range p.Blocks[b].Modules {
				if mp.Action == hook.Prune {
					c.Pruned++
					break
				}
			}
		}
	}
	tr.Calls = append(tr.Calls, c)
	for j := len(tr.Prune); j < len(events); j++ {
		ev := events[j]
		tr.Prune = append(tr.Prune, UNetPruneStep{Index: j, Call: ev.Call, T: t, Block: tr.names[ev.Block], NumPrune: ev.K,
			SignDraw: ev.Sign, GammaUsed: ev.Gamma, HasDynamics: ev.Dynamics})
	}
}

// Write saves the trace as JSON.
func (tr *UNetTrace) Write(path string) error {
	data, err := json.MarshalIndent(tr, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	return nil
}
