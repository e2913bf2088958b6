package methods

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
)

// DryRun replays a method's plans for every call without running a network and counts FLOPs
// with the model's counter. Schedules do not depend on scores, so FLOPs are exact; token
// choices are made on the device, so a dry trace holds counts, not indices.
func DryRun(m Method, env Env, counter hook.FLOPsCounter, timesteps []int64) (*Trace, error) {
	tr := &Trace{NumSteps: env.Steps, TokensPerRow: env.Layout.Tokens, BatchRows: env.Rows, TimestepMap: timesteps}
	for call := range env.Steps {
		step := env.Steps - 1 - call
		p, err := m.Plan(call, step)
		if err != nil {
			return nil, fmt.Errorf("call %d: %w", call, err)
		}
		if err := m.Observe(call, step, p, nil); err != nil {
			return nil, fmt.Errorf("call %d: %w", call, err)
		}
		var t int64
		if step < len(timesteps) {
			t = timesteps[step]
		}
		tr.Record(call, step, float64(t), p, m.Notes(), counter.BlockFLOPs(p, env.Rows), env.Layout.Tokens)
	}
	return tr, nil
}
