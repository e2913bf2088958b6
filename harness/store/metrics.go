package store

import (
	"time"
)

// Metric is one row of the metrics table.
type Metric struct {
	Name      string  // fid, sfid, is, precision, recall, kid, clip_score, ...
	Value     float64 // the metric's value
	N         int     // number of generated samples it was computed on
	Reference string  // what it was computed against (reference statistics file or its hash)
	Extractor string  // feature network and weights (e.g. pytorch-fid-inception-v3@<sha256 prefix>)
	Resize    string  // resize policy of the extractor input
}

// PutMetrics stores metrics of a run in one transaction, replacing earlier values of the same
// (name, reference, extractor).
func (db *DB) PutMetrics(runID int64, ms []Metric) error {
	for _, m := range ms {
		if m.Name == "" || !finite(m.Value) || m.N < 0 {
			return db.errf("run %d metrics: %q = %v over %d samples is not a storable metric", runID, m.Name, m.Value, m.N)
		}
	}
	tx, err := db.db.Begin()
	if err != nil {
		return db.errf("run %d metrics: %w", runID, err)
	}
	defer tx.Rollback()
	if err := runExists(tx, runID); err != nil {
		return db.errf("run %d metrics: %w", runID, err)
	}
	now := fmtTime(time.Now())
	for _, m := range ms {
		if _, err := tx.Exec(`INSERT OR REPLACE INTO metrics (run_id, name, value, n, reference, extractor, resize, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, runID, m.Name, m.Value, m.N, m.Reference, m.Extractor, m.Resize, now); err != nil {
			return db.errf("run %d metrics: %w", runID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return db.errf("run %d metrics: commit: %w", runID, err)
	}
	return nil
}

// Metrics returns a run's metrics ordered by name.
func (db *DB) Metrics(runID int64) ([]Metric, error) {
	rows, err := db.db.Query(`SELECT name, value, n, reference, extractor, resize FROM metrics WHERE run_id = ? ORDER BY name, reference, extractor`, runID)
	if err != nil {
		return nil, db.errf("run %d metrics: %w", runID, err)
	}
	defer rows.Close()
	var out []Metric
	for rows.Next() {
		var m Metric
		if err := rows.Scan(&m.Name, &m.Value, &m.N, &m.Reference, &m.Extractor, &m.Resize); err != nil {
			return nil, db.errf("run %d metrics: %w", runID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
