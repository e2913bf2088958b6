package store

// SampleIndices returns the sample indices a run holds, ascending, without reading the samples
// (whose features can make a 50,000-sample run weigh a gigabyte).
func (db *DB) SampleIndices(runID int64) ([]int, error) {
	rows, err := db.db.Query("SELECT sample_index FROM samples WHERE run_id = ? ORDER BY sample_index", runID)
	if err != nil {
		return nil, db.errf("run %d sample indices: %w", runID, err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			return nil, db.errf("run %d sample indices: %w", runID, err)
		}
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("run %d sample indices: %w", runID, err)
	}
	return out, nil
}
