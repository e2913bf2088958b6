package store

import (
	"database/sql"
	"fmt"
)

// TokenStats summarise a per-token quantity over tokens (and rows).
type TokenStats struct{ Mean, Std, P50, P90, P99 float64 }

// StepStat is one row of step_stats: one (step, block, module) of a run, for one sample or
// (Sample nil) the whole batch. Block −1 with Module "output" or "state" holds the model output
// and the sampler state; nil fields were not measured.
type StepStat struct {
	Sample         *int
	Call, Step     int
	Timestep       int64
	Block          int
	Module         string
	Action         string
	FreshTokens    *int
	FLOPs          *int64
	DynRelL1       *float64
	DynRelL2       *float64
	DynTok         *TokenStats
	ErrRelL1       *float64
	ErrRelL2       *float64
	ErrTok         *TokenStats
	ErrFreshRelL2  *float64
	ErrCachedRelL2 *float64
	Tokens         string // JSON token indices per row recomputed at this step ("" = not recorded)
}

const stepStatColumns = `run_id, sample, call, step, timestep, block, module, action, fresh_tokens, flops,
	dyn_rel_l1, dyn_rel_l2, dyn_tok_mean, dyn_tok_std, dyn_tok_p50, dyn_tok_p90, dyn_tok_p99,
	err_rel_l1, err_rel_l2, err_tok_mean, err_tok_std, err_tok_p50, err_tok_p90, err_tok_p99,
	err_fresh_rel_l2, err_cached_rel_l2, tokens`

func insertStepStats(tx *sql.Tx, runID int64, rows []StepStat) error {
	if len(rows) == 0 {
		return nil
	}
	st, err := tx.Prepare("INSERT INTO step_stats (" + stepStatColumns + ") VALUES (?" + repeat(", ?", 26) + ")")
	if err != nil {
		return err
	}
	defer st.Close()
	tok := func(t *TokenStats) []any {
		if t == nil {
			return []any{nil, nil, nil, nil, nil}
		}
		return []any{nullF(t.Mean), nullF(t.Std), nullF(t.P50), nullF(t.P90), nullF(t.P99)}
	}
	for _, r := range rows {
		args := []any{runID, r.Sample, r.Call, r.Step, r.Timestep, r.Block, r.Module, nullStr(r.Action), r.FreshTokens, r.FLOPs,
			nullP(r.DynRelL1), nullP(r.DynRelL2)}
		args = append(args, tok(r.DynTok)...)
		args = append(args, nullP(r.ErrRelL1), nullP(r.ErrRelL2))
		args = append(args, tok(r.ErrTok)...)
		args = append(args, nullP(r.ErrFreshRelL2), nullP(r.ErrCachedRelL2), nullStr(r.Tokens))
		if _, err := st.Exec(args...); err != nil {
			return fmt.Errorf("step_stats: %w", err)
		}
	}
	return nil
}

// StepStats returns a run's recorded rows ordered by (sample, call, block, module).
func (db *DB) StepStats(runID int64) ([]StepStat, error) {
	rows, err := db.db.Query(`SELECT `+stepStatColumns+` FROM step_stats WHERE run_id = ?
		ORDER BY sample IS NOT NULL, sample, call, block, module`, runID)
	if err != nil {
		return nil, db.errf("run %d step_stats: %w", runID, err)
	}
	defer rows.Close()
	var out []StepStat
	for rows.Next() {
		var r StepStat
		var run int64
		var sample, fresh sql.NullInt64
		var flops sql.NullInt64
		var action, tokens sql.NullString
		f := make([]sql.NullFloat64, 16)
		dest := []any{&run, &sample, &r.Call, &r.Step, &r.Timestep, &r.Block, &r.Module, &action, &fresh, &flops}
		for i := range f {
			dest = append(dest, &f[i])
		}
		dest = append(dest, &tokens)
		if err := rows.Scan(dest...); err != nil {
			return nil, db.errf("run %d step_stats: %w", runID, err)
		}
		if sample.Valid {
			v := int(sample.Int64)
			r.Sample = &v
		}
		if fresh.Valid {
			v := int(fresh.Int64)
			r.FreshTokens = &v
		}
		if flops.Valid {
			r.FLOPs = &flops.Int64
		}
		r.Action, r.Tokens = action.String, tokens.String
		p := func(i int) *float64 {
			if !f[i].Valid {
				return nil
			}
			v := f[i].Float64
			return &v
		}
		ts := func(i int) *TokenStats {
			if !f[i].Valid {
				return nil
			}
			return &TokenStats{Mean: f[i].Float64, Std: f[i+1].Float64, P50: f[i+2].Float64, P90: f[i+3].Float64, P99: f[i+4].Float64}
		}
		r.DynRelL1, r.DynRelL2, r.DynTok = p(0), p(1), ts(2)
		r.ErrRelL1, r.ErrRelL2, r.ErrTok = p(7), p(8), ts(9)
		r.ErrFreshRelL2, r.ErrCachedRelL2 = p(14), p(15)
		out = append(out, r)
	}
	return out, rows.Err()
}

func nullP(p *float64) any {
	if p == nil {
		return nil
	}
	return nullF(*p)
}

// nullF stores a non-finite measurement as NULL (SQLite has no NaN).
func nullF(v float64) any {
	if !finite(v) {
		return nil
	}
	return v
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
