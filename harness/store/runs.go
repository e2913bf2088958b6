package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Run statuses, the only values the status column accepts.
const (
	StatusRunning = "running" // StatusRunning marks a run started and not finished.
	StatusDone    = "done"    // StatusDone marks a run whose batches are all committed.
	StatusFailed  = "failed"  // StatusFailed marks a run that stopped on an error.
)

// Run is one row of the runs table: one configuration (method, model, sampler, ...) of a sweep.
type Run struct {
	ID          int64     // ID is the row id, assigned by EnsureRun.
	ConfigHash  string    // ConfigHash identifies the configuration (ConfigHash of ConfigJSON when left empty).
	ConfigJSON  string    // ConfigJSON is the canonical JSON of the full configuration.
	Method      string    // Method names the acceleration method ("" is stored as NULL, as for the other strings).
	Model       string    // Model names the model.
	WeightsHash string    // WeightsHash identifies the weights file.
	Sampler     string    // Sampler names the sampler.
	Steps       int       // Steps is the number of sampling steps.
	CFGScale    float64   // CFGScale is the classifier-free guidance scale.
	Seed        int64     // Seed is the base seed of the run.
	NumSamples  int       // NumSamples is the number of samples the run generates.
	BatchSize   int       // BatchSize is the number of samples per batch.
	Backend     string    // Backend is the compute backend configuration.
	Device      string    // Device describes the device the run ran on.
	GitRev      string    // GitRev is the git revision of the harness.
	Status      string    // Status is StatusRunning, StatusDone or StatusFailed ("" means running on insert).
	CreatedAt   time.Time // CreatedAt is when the row was inserted (UTC; now when zero on insert).
	UpdatedAt   time.Time // UpdatedAt is when the row last changed (status or a committed batch).
}

const runColumns = `id, config_hash, config_json, method, model, weights_hash, sampler, steps, cfg_scale,
	seed, num_samples, batch_size, backend, device, git_rev, status, created_at, updated_at`

// EnsureRun inserts r keyed by its config hash, or returns the existing row (bool = already existed); a different config_json for the same hash is an error.
func (db *DB) EnsureRun(r Run) (Run, bool, error) {
	if r.ConfigJSON == "" {
		return Run{}, false, db.errf("ensure run: empty config_json")
	}
	if !json.Valid([]byte(r.ConfigJSON)) {
		return Run{}, false, db.errf("ensure run: config_json is not valid JSON")
	}
	if r.ConfigHash == "" {
		r.ConfigHash = ConfigHash([]byte(r.ConfigJSON))
	}
	if r.Status == "" {
		r.Status = StatusRunning
	}
	if !validStatus(r.Status) {
		return Run{}, false, db.errf("ensure run: invalid status %q", r.Status)
	}
	if math.IsNaN(r.CFGScale) || math.IsInf(r.CFGScale, 0) {
		return Run{}, false, db.errf("ensure run: cfg_scale %v is not finite", r.CFGScale)
	}
	now := time.Now()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}

	tx, err := db.db.Begin()
	if err != nil {
		return Run{}, false, db.errf("ensure run: %w", err)
	}
	defer tx.Rollback()
	existing, err := scanRun(tx.QueryRow("SELECT "+runColumns+" FROM runs WHERE config_hash = ?", r.ConfigHash))
	switch {
	case err == nil:
		if existing.ConfigJSON != r.ConfigJSON {
			return Run{}, false, db.errf("ensure run: config hash %s is already stored (run %d) with a different config_json", r.ConfigHash, existing.ID)
		}
		return existing, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Run{}, false, db.errf("ensure run: %w", err)
	}
	id, err := insertRun(tx, r)
	if err != nil {
		return Run{}, false, db.errf("ensure run: %w", err)
	}
	stored, err := scanRun(tx.QueryRow("SELECT "+runColumns+" FROM runs WHERE id = ?", id))
	if err != nil {
		return Run{}, false, db.errf("ensure run: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Run{}, false, db.errf("ensure run: commit: %w", err)
	}
	return stored, false, nil
}

// Run returns the run with the given id (an error wrapping ErrNotFound if none).
func (db *DB) Run(id int64) (Run, error) {
	r, err := scanRun(db.db.QueryRow("SELECT "+runColumns+" FROM runs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, db.errf("run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, db.errf("run %d: %w", id, err)
	}
	return r, nil
}

// RunByHash returns the run with the given config hash (an error wrapping ErrNotFound if none).
func (db *DB) RunByHash(h string) (Run, error) {
	r, err := scanRun(db.db.QueryRow("SELECT "+runColumns+" FROM runs WHERE config_hash = ?", h))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, db.errf("run with config hash %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return Run{}, db.errf("run with config hash %s: %w", h, err)
	}
	return r, nil
}

// Runs returns all runs ordered by id.
func (db *DB) Runs() ([]Run, error) {
	rows, err := db.db.Query("SELECT " + runColumns + " FROM runs ORDER BY id")
	if err != nil {
		return nil, db.errf("runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, db.errf("runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("runs: %w", err)
	}
	return out, nil
}

// SetStatus sets the status of a run ("running", "done" or "failed") and its updated_at.
func (db *DB) SetStatus(runID int64, status string) error {
	if !validStatus(status) {
		return db.errf("set status of run %d: invalid status %q", runID, status)
	}
	res, err := db.db.Exec("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", status, fmtTime(time.Now()), runID)
	if err != nil {
		return db.errf("set status of run %d: %w", runID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return db.errf("set status of run %d: %w", runID, err)
	}
	if n == 0 {
		return db.errf("set status of run %d: %w", runID, ErrNotFound)
	}
	return nil
}

// insertRun inserts a run row (its ID is ignored) and returns the new ID.
func insertRun(tx *sql.Tx, r Run) (int64, error) {
	res, err := tx.Exec(`INSERT INTO runs (config_hash, config_json, method, model, weights_hash, sampler, steps,
		cfg_scale, seed, num_samples, batch_size, backend, device, git_rev, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ConfigHash, r.ConfigJSON, nullStr(r.Method), nullStr(r.Model), nullStr(r.WeightsHash), nullStr(r.Sampler),
		r.Steps, r.CFGScale, r.Seed, r.NumSamples, r.BatchSize, nullStr(r.Backend), nullStr(r.Device), nullStr(r.GitRev),
		r.Status, fmtTime(r.CreatedAt), fmtTime(r.UpdatedAt))
	if err != nil {
		return 0, fmt.Errorf("insert: %w", err)
	}
	return res.LastInsertId()
}

func validStatus(s string) bool {
	return s == StatusRunning || s == StatusDone || s == StatusFailed
}

type scanner interface{ Scan(dest ...any) error }

func scanRun(s scanner) (Run, error) {
	var (
		r                                                     Run
		method, model, weights, sampler, backend, device, rev sql.NullString
		created, updated                                      string
	)
	err := s.Scan(&r.ID, &r.ConfigHash, &r.ConfigJSON, &method, &model, &weights, &sampler, &r.Steps, &r.CFGScale,
		&r.Seed, &r.NumSamples, &r.BatchSize, &backend, &device, &rev, &r.Status, &created, &updated)
	if err != nil {
		return Run{}, err
	}
	r.Method, r.Model, r.WeightsHash, r.Sampler = method.String, model.String, weights.String, sampler.String
	r.Backend, r.Device, r.GitRev = backend.String, device.String, rev.String
	if r.CreatedAt, err = parseTime(created); err != nil {
		return Run{}, fmt.Errorf("run %d: created_at: %w", r.ID, err)
	}
	if r.UpdatedAt, err = parseTime(updated); err != nil {
		return Run{}, fmt.Errorf("run %d: updated_at: %w", r.ID, err)
	}
	return r, nil
}

// timeLayouts are the formats parseTime accepts: ours, and SQLite's datetime() for rows written by hand.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999"}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q (want RFC 3339)", s)
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}
