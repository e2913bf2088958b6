package store

import (
	"database/sql"
	"errors"
)

// RunFLOPs is one row of the run_flops table: a run's planned FLOPs per image and its FLOPs
// speedup over method none, counted from the method's plans without running the network.
type RunFLOPs struct {
	PerImage     int64   // PerImage is the FLOPs of one image (with its CFG row) over all sampling calls.
	BasePerImage int64   // BasePerImage is the same for method none on the reference schedule.
	Speedup      float64 // Speedup is BasePerImage / PerImage.
	RowsPerImage int     // RowsPerImage is the batch rows one image takes (2 with CFG).
	Convention   string  // Convention says what is counted (e.g. transformer blocks only).
}

// PutRunFLOPs stores (or replaces) a run's planned FLOPs.
func (db *DB) PutRunFLOPs(runID int64, f RunFLOPs) error {
	if f.PerImage < 0 || f.BasePerImage < 0 || f.RowsPerImage <= 0 || !finite(f.Speedup) {
		return db.errf("run %d flops: %+v is not storable", runID, f)
	}
	tx, err := db.db.Begin()
	if err != nil {
		return db.errf("run %d flops: %w", runID, err)
	}
	defer tx.Rollback()
	if err := runExists(tx, runID); err != nil {
		return db.errf("run %d flops: %w", runID, err)
	}
	if _, err := tx.Exec(`INSERT OR REPLACE INTO run_flops (run_id, flops_per_image, baseline_flops_per_image, speedup, rows_per_image, convention)
		VALUES (?, ?, ?, ?, ?, ?)`, runID, f.PerImage, f.BasePerImage, f.Speedup, f.RowsPerImage, f.Convention); err != nil {
		return db.errf("run %d flops: %w", runID, err)
	}
	if err := tx.Commit(); err != nil {
		return db.errf("run %d flops: commit: %w", runID, err)
	}
	return nil
}

// RunFLOPs returns a run's planned FLOPs (nil when none are stored).
func (db *DB) RunFLOPs(runID int64) (*RunFLOPs, error) {
	var f RunFLOPs
	err := db.db.QueryRow(`SELECT flops_per_image, baseline_flops_per_image, speedup, rows_per_image, convention
		FROM run_flops WHERE run_id = ?`, runID).Scan(&f.PerImage, &f.BasePerImage, &f.Speedup, &f.RowsPerImage, &f.Convention)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, db.errf("run %d flops: %w", runID, err)
	}
	return &f, nil
}

// ExecutedFLOPs sums what a run's committed batches executed, over the samples they cover;
// batches without a count are left out of both sums.
func (db *DB) ExecutedFLOPs(runID int64) (flops int64, samples int, err error) {
	var f, n sql.NullInt64
	if err := db.db.QueryRow(`SELECT sum(flops), sum(num_samples) FROM batches WHERE run_id = ? AND flops IS NOT NULL`,
		runID).Scan(&f, &n); err != nil {
		return 0, 0, db.errf("run %d executed flops: %w", runID, err)
	}
	return f.Int64, int(n.Int64), nil
}

// nullInt maps 0 (not counted) to NULL.
func nullInt(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}
