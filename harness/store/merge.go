package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MergeStats counts what Merge did.
type MergeStats struct {
	Runs       int // Runs is the number of runs in the source.
	NewRuns    int // NewRuns counts the source runs the destination did not have.
	Batches    int // Batches counts the batches copied.
	Samples    int // Samples counts the samples copied.
	Duplicates int // Duplicates counts source batches already present with identical samples (skipped).
	Metrics    int // Metrics counts the metric rows copied.
}

// mergeTables are the tables Merge knows how to copy; a source with rows in any other table is
// refused rather than merged incompletely.
var mergeTables = map[string]bool{"meta": true, "runs": true, "batches": true, "samples": true, "timings": true,
	"metrics": true, "step_stats": true, "run_flops": true, "cache_bytes": true, "calibrations": true}

// sameSample is the SQL condition under which sample row m (destination) equals s (source):
// every column that results depend on, the output path excepted (shards write on other machines).
const sameSample = `m.label IS s.label AND m.prompt IS s.prompt AND m.noise_seed = s.noise_seed
	AND m.output_hash IS s.output_hash AND m.features IS s.features`

// Merge copies every run of the store at srcPath into db, in one transaction: runs are matched
// by config hash (the same hash with a different config_json is refused), batches are copied
// with their samples, timings and step statistics, and a batch that overlaps one already
// present is skipped when its samples are identical and refused otherwise, so merging a shard
// twice changes nothing. Metrics, planned FLOPs and calibrations are copied unless they
// contradict the destination. A run holding all its samples afterwards is marked done.
func (db *DB) Merge(srcPath string) (MergeStats, error) {
	var st MergeStats
	fail := func(format string, args ...any) (MergeStats, error) {
		return MergeStats{}, db.errf("merge %s: "+format, append([]any{srcPath}, args...)...)
	}
	if db.readOnly {
		return fail("the destination is open read-only")
	}
	src, err := OpenReadOnly(srcPath)
	if err != nil {
		return MergeStats{}, err
	}
	src.Close()
	if a, errA := os.Stat(srcPath); errA == nil {
		if b, errB := os.Stat(db.path); errB == nil && os.SameFile(a, b) {
			return fail("it is the destination itself")
		}
	}
	abs, err := filepath.Abs(srcPath)
	if err != nil {
		return fail("%w", err)
	}
	ctx := context.Background()
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return fail("%w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "ATTACH DATABASE ? AS src", "file:"+uriEscape(abs)+"?mode=ro"); err != nil {
		return fail("attach: %w", err)
	}
	defer conn.ExecContext(ctx, "DETACH DATABASE src")
	if err := checkMergeTables(ctx, conn); err != nil {
		return fail("%w", err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fail("%w", err)
	}
	defer tx.Rollback()
	m := merger{tx: tx, cols: map[string][]string{}}
	rows, err := tx.Query("SELECT " + runColumns + " FROM src.runs ORDER BY id")
	if err != nil {
		return fail("%w", err)
	}
	var runs []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return fail("%w", err)
		}
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("%w", err)
	}
	for _, r := range runs {
		if err := m.run(r, &st); err != nil {
			return fail("%w", err)
		}
	}
	if err := m.copyCalibrations(); err != nil {
		return fail("%w", err)
	}
	if err := tx.Commit(); err != nil {
		return fail("commit: %w", err)
	}
	return st, nil
}

// checkMergeTables refuses a source with rows in tables Merge does not know.
func checkMergeTables(ctx context.Context, conn *sql.Conn) error {
	rows, err := conn.QueryContext(ctx, `SELECT name FROM src.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if mergeTables[n] {
			continue
		}
		var cnt int
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM src."`+strings.ReplaceAll(n, `"`, `""`)+`"`).Scan(&cnt); err != nil {
			return err
		}
		if cnt > 0 {
			return fmt.Errorf("table %s has %d rows that this build's merge does not know how to copy", n, cnt)
		}
	}
	return nil
}

// merger copies one source run at a time inside the merge transaction.
type merger struct {
	tx   *sql.Tx
	cols map[string][]string
}

// columns lists a table's columns (both files have the same schema version, so the same columns).
func (m *merger) columns(table string) ([]string, error) {
	if c, ok := m.cols[table]; ok {
		return c, nil
	}
	rows, err := m.tx.Query("SELECT name FROM pragma_table_info(?, 'main')", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	m.cols[table] = out
	return out, rows.Err()
}

// copyRows copies the rows of src.table matching where, replacing the columns of override by SQL
// expressions and leaving out the columns of skip (e.g. an autoincrement id).
func (m *merger) copyRows(table string, override map[string]string, skip map[string]bool, orIgnore bool, where string, args ...any) (int64, error) {
	cols, err := m.columns(table)
	if err != nil {
		return 0, err
	}
	var names, exprs []string
	for _, c := range cols {
		if skip[c] {
			continue
		}
		names = append(names, `"`+c+`"`)
		if e, ok := override[c]; ok {
			exprs = append(exprs, e)
		} else {
			exprs = append(exprs, `s."`+c+`"`)
		}
	}
	verb := "INSERT"
	if orIgnore {
		verb = "INSERT OR IGNORE"
	}
	res, err := m.tx.Exec(fmt.Sprintf(`%s INTO main.%s (%s) SELECT %s FROM src.%s s WHERE %s`, verb, table,
		strings.Join(names, ", "), strings.Join(exprs, ", "), table, where), args...)
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", table, err)
	}
	return res.RowsAffected()
}

type srcBatch struct{ index, first, n int }

// mergeRun is one source run being merged and the destination run it goes into.
type mergeRun struct {
	src   Run    // the source run
	dst   Run    // its destination row (of a run new to the destination, only ID and NumSamples are set)
	short string // the config hash cut to 12 characters, for messages
}

// runOverride points copied rows at the destination run.
func (mr *mergeRun) runOverride() map[string]string {
	return map[string]string{"run_id": fmt.Sprint(mr.dst.ID)}
}

// run merges one source run: it finds or creates the destination run, copies the batches the
// destination lacks, then the metrics and planned FLOPs, and settles the run's status.
func (m *merger) run(r Run, st *MergeStats) error {
	st.Runs++
	mr := &mergeRun{src: r, short: r.ConfigHash}
	if len(mr.short) > 12 {
		mr.short = mr.short[:12]
	}
	isNew, err := m.destination(mr, st)
	if err != nil {
		return err
	}
	batches, err := m.sourceBatches(r.ID)
	if err != nil {
		return err
	}
	contributed := isNew
	for _, b := range batches {
		copied, err := m.batch(mr, b, st)
		if err != nil {
			return err
		}
		if copied {
			contributed = true
		}
	}
	if contributed {
		if err := m.copyRunRows(mr); err != nil {
			return err
		}
	}
	if err := m.copyMetrics(mr, st); err != nil {
		return err
	}
	if err := m.copyFLOPs(mr); err != nil {
		return err
	}
	return m.settleStatus(mr)
}

// destination finds the destination run with the source run's config hash, refusing one with a
// different configuration, or inserts it as running; it reports whether the run is new.
func (m *merger) destination(mr *mergeRun, st *MergeStats) (bool, error) {
	r := mr.src
	dst, err := scanRun(m.tx.QueryRow("SELECT "+runColumns+" FROM main.runs WHERE config_hash = ?", r.ConfigHash))
	isNew := false
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r.Status = StatusRunning
		id, err := insertRun(m.tx, r)
		if err != nil {
			return false, fmt.Errorf("run %s: %w", mr.short, err)
		}
		dst.ID, dst.NumSamples = id, r.NumSamples
		isNew = true
		st.NewRuns++
	case err != nil:
		return false, err
	case dst.ConfigJSON != r.ConfigJSON:
		return false, fmt.Errorf("run %s (config hash %s): the two files hold different configurations under the same hash; refusing to mix them", mr.short, r.ConfigHash)
	}
	mr.dst = dst
	return isNew, nil
}

// sourceBatches lists a source run's batches in sample order.
func (m *merger) sourceBatches(runID int64) ([]srcBatch, error) {
	rows, err := m.tx.Query("SELECT batch_index, first_sample, num_samples FROM src.batches WHERE run_id = ? ORDER BY first_sample", runID)
	if err != nil {
		return nil, err
	}
	var batches []srcBatch
	for rows.Next() {
		var b srcBatch
		if err := rows.Scan(&b.index, &b.first, &b.n); err != nil {
			rows.Close()
			return nil, err
		}
		batches = append(batches, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return batches, nil
}

// batch copies one source batch with its samples, timings and step statistics, or skips it when
// the destination's batches already cover its range with identical samples; it reports whether
// it copied. Different results for the same samples are refused either way.
func (m *merger) batch(mr *mergeRun, b srcBatch, st *MergeStats) (bool, error) {
	end := b.first + b.n
	if end > mr.src.NumSamples {
		return false, fmt.Errorf("run %s: batch %d covers samples [%d, %d) past the run's %d samples", mr.short, b.index, b.first, end, mr.src.NumSamples)
	}
	dup, err := m.covered(mr, b.first, end)
	if err != nil {
		return false, err
	}
	if dup {
		st.Duplicates++
		return false, nil
	}
	var bad sql.NullInt64
	if err := m.tx.QueryRow(`SELECT min(s.sample_index) FROM src.samples s JOIN main.samples m ON m.run_id = ? AND m.sample_index = s.sample_index
		WHERE s.run_id = ? AND s.sample_index >= ? AND s.sample_index < ? AND NOT (`+sameSample+`)`,
		mr.dst.ID, mr.src.ID, b.first, end).Scan(&bad); err != nil {
		return false, err
	}
	if bad.Valid {
		return false, fmt.Errorf("run %s: sample %d differs between the two files (output hash, label, noise seed or features); refusing to merge", mr.short, bad.Int64)
	}
	index, err := m.batchIndex(mr.dst.ID, b.index)
	if err != nil {
		return false, err
	}
	n, err := m.copyBatchRows(mr, b, index)
	if err != nil {
		return false, err
	}
	st.Batches++
	st.Samples += int(n)
	return true, nil
}

// covered tells whether destination batches already overlap samples [first, end), which is
// only allowed (as a duplicate to skip) when the destination holds every one of them identical.
func (m *merger) covered(mr *mergeRun, first, end int) (bool, error) {
	var overlap int
	if err := m.tx.QueryRow(`SELECT count(*) FROM main.batches WHERE run_id = ? AND first_sample < ? AND first_sample + num_samples > ?`,
		mr.dst.ID, end, first).Scan(&overlap); err != nil {
		return false, err
	}
	if overlap == 0 {
		return false, nil
	}
	var bad sql.NullInt64
	if err := m.tx.QueryRow(`SELECT min(s.sample_index) FROM src.samples s WHERE s.run_id = ? AND s.sample_index >= ? AND s.sample_index < ?
		AND NOT EXISTS (SELECT 1 FROM main.samples m WHERE m.run_id = ? AND m.sample_index = s.sample_index AND `+sameSample+`)`,
		mr.src.ID, first, end, mr.dst.ID).Scan(&bad); err != nil {
		return false, err
	}
	if bad.Valid {
		return false, fmt.Errorf("run %s: sample %d is missing or different in the destination, whose batches already cover [%d, %d); refusing to merge different results",
			mr.short, bad.Int64, first, end)
	}
	return true, nil
}

// batchIndex keeps a source batch's index unless the destination run already uses it (shards
// number their batches independently), in which case the batch goes after the last one.
func (m *merger) batchIndex(dstID int64, index int) (int, error) {
	var taken int
	if err := m.tx.QueryRow("SELECT count(*) FROM main.batches WHERE run_id = ? AND batch_index = ?", dstID, index).Scan(&taken); err != nil {
		return 0, err
	}
	if taken > 0 {
		if err := m.tx.QueryRow("SELECT max(batch_index) + 1 FROM main.batches WHERE run_id = ?", dstID).Scan(&index); err != nil {
			return 0, err
		}
	}
	return index, nil
}

// copyBatchRows copies a source batch under its destination index, with its samples, timings and
// step statistics, and returns the number of samples copied.
func (m *merger) copyBatchRows(mr *mergeRun, b srcBatch, index int) (int64, error) {
	end := b.first + b.n
	bo := map[string]string{"run_id": fmt.Sprint(mr.dst.ID), "batch_index": fmt.Sprint(index)}
	if _, err := m.copyRows("batches", bo, nil, false, "s.run_id = ? AND s.batch_index = ?", mr.src.ID, b.index); err != nil {
		return 0, err
	}
	n, err := m.copyRows("samples", mr.runOverride(), nil, true, "s.run_id = ? AND s.sample_index >= ? AND s.sample_index < ?", mr.src.ID, b.first, end)
	if err != nil {
		return 0, err
	}
	if _, err := m.copyRows("timings", bo, map[string]bool{"id": true}, false, "s.run_id = ? AND s.batch_index = ?", mr.src.ID, b.index); err != nil {
		return 0, err
	}
	if _, err := m.copyRows("step_stats", mr.runOverride(), nil, false, "s.run_id = ? AND s.sample >= ? AND s.sample < ?", mr.src.ID, b.first, end); err != nil {
		return 0, err
	}
	if _, err := m.copyRows("cache_bytes", bo, nil, false, "s.run_id = ? AND s.batch_index = ?", mr.src.ID, b.index); err != nil {
		return 0, err
	}
	return n, nil
}

// copyRunRows copies the timings and step statistics that belong to the run rather than a batch;
// they go with the first contribution of a source run, so merging it twice does not repeat them.
func (m *merger) copyRunRows(mr *mergeRun) error {
	if _, err := m.copyRows("timings", mr.runOverride(), map[string]bool{"id": true}, false, "s.run_id = ? AND s.batch_index IS NULL", mr.src.ID); err != nil {
		return err
	}
	if _, err := m.copyRows("step_stats", mr.runOverride(), nil, false, "s.run_id = ? AND s.sample IS NULL", mr.src.ID); err != nil {
		return err
	}
	return nil
}

// copyMetrics copies the source run's metrics the destination lacks, refusing a metric both
// files hold with different values.
func (m *merger) copyMetrics(mr *mergeRun, st *MergeStats) error {
	var diff sql.NullString
	if err := m.tx.QueryRow(`SELECT min(s.name) FROM src.metrics s JOIN main.metrics m ON m.run_id = ? AND m.name = s.name
		AND m.reference = s.reference AND m.extractor = s.extractor WHERE s.run_id = ? AND (m.value != s.value OR m.n != s.n)`,
		mr.dst.ID, mr.src.ID).Scan(&diff); err != nil {
		return err
	}
	if diff.Valid {
		return fmt.Errorf("run %s: metric %s has different values in the two files", mr.short, diff.String)
	}
	n, err := m.copyRows("metrics", mr.runOverride(), nil, true, "s.run_id = ?", mr.src.ID)
	if err != nil {
		return err
	}
	st.Metrics += int(n)
	return nil
}

// copyCalibrations copies the calibrations the destination lacks, refusing a key both files hold
// with different measurements (which of the two a run should use is the user's choice).
func (m *merger) copyCalibrations() error {
	var diff sql.NullString
	if err := m.tx.QueryRow(`SELECT min(s.model || ', ' || s.sampler || ' steps ' || s.steps || ', cfg ' || s.cfg_scale) FROM src.calibrations s
		JOIN main.calibrations m USING (model, weights_hash, sampler, steps, cfg_scale) WHERE m.calibration != s.calibration`).Scan(&diff); err != nil {
		return err
	}
	if diff.Valid {
		return fmt.Errorf("the calibration of %s differs between the two files (delete one, or calibrate again into the merged file)", diff.String)
	}
	_, err := m.copyRows("calibrations", nil, nil, true, "1")
	return err
}

// copyFLOPs copies the source run's planned FLOPs unless the destination holds different ones.
func (m *merger) copyFLOPs(mr *mergeRun) error {
	var flopsDiff int
	if err := m.tx.QueryRow(`SELECT count(*) FROM src.run_flops s JOIN main.run_flops m ON m.run_id = ? WHERE s.run_id = ?
		AND (m.flops_per_image != s.flops_per_image OR m.baseline_flops_per_image != s.baseline_flops_per_image OR m.rows_per_image != s.rows_per_image)`,
		mr.dst.ID, mr.src.ID).Scan(&flopsDiff); err != nil {
		return err
	}
	if flopsDiff > 0 {
		return fmt.Errorf("run %s: planned FLOPs differ between the two files", mr.short)
	}
	if _, err := m.copyRows("run_flops", mr.runOverride(), nil, true, "s.run_id = ?", mr.src.ID); err != nil {
		return err
	}
	return nil
}

// settleStatus marks the destination run done when it now holds all its samples, else running.
func (m *merger) settleStatus(mr *mergeRun) error {
	var have int
	if err := m.tx.QueryRow("SELECT count(*) FROM main.samples WHERE run_id = ?", mr.dst.ID).Scan(&have); err != nil {
		return err
	}
	status := StatusRunning
	if have == mr.dst.NumSamples {
		status = StatusDone
	}
	if _, err := m.tx.Exec("UPDATE main.runs SET status = ?, updated_at = ? WHERE id = ?", status, fmtTime(time.Now()), mr.dst.ID); err != nil {
		return err
	}
	return nil
}
