package store

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Sample is one row of the samples table: one generated image or latent of a run.
type Sample struct {
	Index      int       // Index is the sample index within the run (unique per run).
	Label      *int      // Label is the class label, nil when unconditional or text-conditioned.
	Prompt     *string   // Prompt is the text prompt, nil when class-conditioned.
	NoiseSeed  int64     // NoiseSeed seeds the initial noise of the sample.
	OutputPath string    // OutputPath is where the output was written ("" for none, stored as NULL).
	OutputHash string    // OutputHash is the hash of the output file ("" for none, stored as NULL).
	Features   []float32 // Features is the feature vector (e.g. Inception pool3), stored as a little-endian float32 BLOB; nil is NULL.
}

// Timing is one row of the timings table: an aggregated duration measurement.
type Timing struct {
	Scope   string  // Scope is what was timed, e.g. "step", "module:attn", "image", "overhead:topk".
	Name    string  // Name refines the scope (e.g. a block name); may be empty.
	Count   int     // Count is the number of measurements aggregated.
	TotalMS float64 // TotalMS is the sum of the measurements in milliseconds.
	P50MS   float64 // P50MS is the median in milliseconds (0 is stored as NULL, NULL reads as 0).
	P90MS   float64 // P90MS is the 90th percentile in milliseconds (0 is stored as NULL, NULL reads as 0).
}

// Batch is one unit of work committed atomically: its samples, its timings and its done marker.
type Batch struct {
	Index       int        // Index is the batch index within the run.
	FirstSample int        // FirstSample is the index of the batch's first sample.
	NumSamples  int        // NumSamples is the number of samples the batch covers.
	WallMS      float64    // WallMS is the wall-clock duration of the batch in milliseconds.
	FLOPs       int64      // FLOPs is what the batch's model calls executed, all rows (0 = not counted, stored as NULL).
	Samples     []Sample   // Samples are the batch's samples; their indices must lie in [FirstSample, FirstSample+NumSamples).
	Timings     []Timing   // Timings are the batch's timings.
	StepStats   []StepStat // StepStats are the batch's recorded dynamics and cache errors.
	// CacheBytes is the peak memory of the batch's caches by kind ("total" and per content), nil
	// when the run kept no cache.
	CacheBytes map[string]int64
}

// CommitBatch writes a batch's samples, timings and batch row in ONE transaction; committing a batch twice fails (ErrDuplicateBatch) and changes nothing.
func (db *DB) CommitBatch(runID int64, b Batch) error {
	fail := func(format string, args ...any) error {
		return db.errf("run %d batch %d: "+format, append([]any{runID, b.Index}, args...)...)
	}
	switch {
	case b.Index < 0:
		return fail("negative batch index")
	case b.FirstSample < 0:
		return fail("negative first sample %d", b.FirstSample)
	case b.NumSamples <= 0:
		return fail("num_samples %d is not positive", b.NumSamples)
	case b.FirstSample > math.MaxInt-b.NumSamples:
		return fail("sample range overflows")
	case !finite(b.WallMS) || b.WallMS < 0:
		return fail("invalid wall_ms %v", b.WallMS)
	case b.FLOPs < 0:
		return fail("negative flops %d", b.FLOPs)
	}
	end := b.FirstSample + b.NumSamples
	for _, s := range b.Samples {
		if s.Index < b.FirstSample || s.Index >= end {
			return fail("sample index %d outside the batch range [%d, %d)", s.Index, b.FirstSample, end)
		}
	}
	for _, t := range b.Timings {
		if err := checkTiming(t); err != nil {
			return fail("%w", err)
		}
	}

	tx, err := db.db.Begin()
	if err != nil {
		return fail("%w", err)
	}
	defer tx.Rollback()
	if err := runExists(tx, runID); err != nil {
		return fail("%w", err)
	}
	var one int
	switch err := tx.QueryRow("SELECT 1 FROM batches WHERE run_id = ? AND batch_index = ?", runID, b.Index).Scan(&one); {
	case err == nil:
		return fail("%w", ErrDuplicateBatch)
	case !errors.Is(err, sql.ErrNoRows):
		return fail("%w", err)
	}
	var other int
	err = tx.QueryRow(`SELECT batch_index FROM batches WHERE run_id = ? AND first_sample < ? AND first_sample + num_samples > ?
		LIMIT 1`, runID, end, b.FirstSample).Scan(&other)
	switch {
	case err == nil:
		return fail("sample range [%d, %d) overlaps committed batch %d", b.FirstSample, end, other)
	case !errors.Is(err, sql.ErrNoRows):
		return fail("%w", err)
	}

	now := fmtTime(time.Now())
	if _, err := tx.Exec(`INSERT INTO batches (run_id, batch_index, first_sample, num_samples, wall_ms, finished_at, flops)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, runID, b.Index, b.FirstSample, b.NumSamples, b.WallMS, now, nullInt(b.FLOPs)); err != nil {
		return fail("insert batch: %w", err)
	}
	if len(b.Samples) > 0 {
		st, err := tx.Prepare(`INSERT INTO samples (run_id, sample_index, label, prompt, noise_seed, output_path, output_hash, features)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fail("%w", err)
		}
		defer st.Close()
		for _, s := range b.Samples {
			var label, prompt any
			if s.Label != nil {
				label = *s.Label
			}
			if s.Prompt != nil {
				prompt = *s.Prompt
			}
			if _, err := st.Exec(runID, s.Index, label, prompt, s.NoiseSeed, nullStr(s.OutputPath), nullStr(s.OutputHash),
				encodeFeatures(s.Features)); err != nil {
				return fail("insert sample %d: %w", s.Index, err)
			}
		}
	}
	if err := insertTimings(tx, runID, b.Index, b.Timings); err != nil {
		return fail("%w", err)
	}
	if err := insertStepStats(tx, runID, b.StepStats); err != nil {
		return fail("%w", err)
	}
	for kind, n := range b.CacheBytes {
		if n < 0 || kind == "" {
			return fail("cache bytes %q = %d", kind, n)
		}
		if _, err := tx.Exec(`INSERT INTO cache_bytes (run_id, batch_index, kind, peak_bytes) VALUES (?, ?, ?, ?)`, runID, b.Index, kind, n); err != nil {
			return fail("insert cache bytes: %w", err)
		}
	}
	if _, err := tx.Exec("UPDATE runs SET updated_at = ? WHERE id = ?", now, runID); err != nil {
		return fail("%w", err)
	}
	if err := tx.Commit(); err != nil {
		return fail("commit: %w", err)
	}
	return nil
}

// AddTimings stores run-level timings (batch_index NULL), e.g. compilation or reference-statistics time.
func (db *DB) AddTimings(runID int64, ts []Timing) error {
	for _, t := range ts {
		if err := checkTiming(t); err != nil {
			return db.errf("run %d timings: %w", runID, err)
		}
	}
	tx, err := db.db.Begin()
	if err != nil {
		return db.errf("run %d timings: %w", runID, err)
	}
	defer tx.Rollback()
	if err := runExists(tx, runID); err != nil {
		return db.errf("run %d timings: %w", runID, err)
	}
	if err := insertTimings(tx, runID, -1, ts); err != nil {
		return db.errf("run %d timings: %w", runID, err)
	}
	if err := tx.Commit(); err != nil {
		return db.errf("run %d timings: commit: %w", runID, err)
	}
	return nil
}

// DoneBatches returns the set of committed batch indices of a run.
func (db *DB) DoneBatches(runID int64) (map[int]bool, error) {
	rows, err := db.db.Query("SELECT batch_index FROM batches WHERE run_id = ?", runID)
	if err != nil {
		return nil, db.errf("run %d batches: %w", runID, err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			return nil, db.errf("run %d batches: %w", runID, err)
		}
		done[i] = true
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("run %d batches: %w", runID, err)
	}
	return done, nil
}

// Samples returns the samples of a run ordered by index.
func (db *DB) Samples(runID int64) ([]Sample, error) { return db.samples(runID, true) }

// SampleOutputs returns a run's samples in index order without their features (which a large
// run holds gigabytes of): what exporting the outputs needs.
func (db *DB) SampleOutputs(runID int64) ([]Sample, error) { return db.samples(runID, false) }

func (db *DB) samples(runID int64, features bool) ([]Sample, error) {
	cols := "sample_index, label, prompt, noise_seed, output_path, output_hash, NULL"
	if features {
		cols = "sample_index, label, prompt, noise_seed, output_path, output_hash, features"
	}
	rows, err := db.db.Query(`SELECT `+cols+` FROM samples WHERE run_id = ? ORDER BY sample_index`, runID)
	if err != nil {
		return nil, db.errf("run %d samples: %w", runID, err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var (
			s                  Sample
			label              sql.NullInt64
			prompt, path, hash sql.NullString
			blob               []byte
		)
		if err := rows.Scan(&s.Index, &label, &prompt, &s.NoiseSeed, &path, &hash, &blob); err != nil {
			return nil, db.errf("run %d samples: %w", runID, err)
		}
		if label.Valid {
			l := int(label.Int64)
			s.Label = &l
		}
		if prompt.Valid {
			p := prompt.String
			s.Prompt = &p
		}
		s.OutputPath, s.OutputHash = path.String, hash.String
		if s.Features, err = decodeFeatures(blob); err != nil {
			return nil, db.errf("run %d sample %d: %w", runID, s.Index, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("run %d samples: %w", runID, err)
	}
	return out, nil
}

// Timings returns all timings of a run: run-level ones first, then by batch, each in insertion order.
func (db *DB) Timings(runID int64) ([]Timing, error) {
	rows, err := db.db.Query(`SELECT scope, name, count, total_ms, p50_ms, p90_ms FROM timings
		WHERE run_id = ? ORDER BY batch_index IS NOT NULL, batch_index, id`, runID)
	if err != nil {
		return nil, db.errf("run %d timings: %w", runID, err)
	}
	defer rows.Close()
	var out []Timing
	for rows.Next() {
		var (
			t        Timing
			p50, p90 sql.NullFloat64
		)
		if err := rows.Scan(&t.Scope, &t.Name, &t.Count, &t.TotalMS, &p50, &p90); err != nil {
			return nil, db.errf("run %d timings: %w", runID, err)
		}
		t.P50MS, t.P90MS = p50.Float64, p90.Float64
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("run %d timings: %w", runID, err)
	}
	return out, nil
}

// insertTimings inserts ts for a batch (batch < 0: run-level, batch_index NULL).
func insertTimings(tx *sql.Tx, runID int64, batch int, ts []Timing) error {
	if len(ts) == 0 {
		return nil
	}
	st, err := tx.Prepare(`INSERT INTO timings (run_id, batch_index, scope, name, count, total_ms, p50_ms, p90_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	var bi any
	if batch >= 0 {
		bi = batch
	}
	for _, t := range ts {
		if _, err := st.Exec(runID, bi, t.Scope, t.Name, t.Count, t.TotalMS, nullMS(t.P50MS), nullMS(t.P90MS)); err != nil {
			return fmt.Errorf("insert timing %s %s: %w", t.Scope, t.Name, err)
		}
	}
	return nil
}

func checkTiming(t Timing) error {
	switch {
	case t.Scope == "":
		return errors.New("timing with empty scope")
	case t.Count < 0:
		return errors.New("timing " + t.Scope + " has a negative count")
	case !finite(t.TotalMS):
		return errors.New("timing " + t.Scope + " has a non-finite total_ms")
	case math.IsInf(t.P50MS, 0) || math.IsInf(t.P90MS, 0):
		return errors.New("timing " + t.Scope + " has an infinite percentile")
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// nullMS maps an absent percentile (0 or NaN) to NULL.
func nullMS(f float64) any {
	if f == 0 || math.IsNaN(f) {
		return nil
	}
	return f
}

func encodeFeatures(f []float32) any {
	if len(f) == 0 {
		return nil
	}
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func decodeFeatures(b []byte) ([]float32, error) {
	if b == nil {
		return nil, nil
	}
	if len(b)%4 != 0 {
		return nil, errors.New("features blob length is not a multiple of 4 bytes")
	}
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f, nil
}

// runExists returns an error wrapping ErrNotFound when run runID does not exist.
func runExists(tx *sql.Tx, runID int64) error {
	var one int
	err := tx.QueryRow("SELECT 1 FROM runs WHERE id = ?", runID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("run %d %w", runID, ErrNotFound)
	}
	return err
}

// PeakCacheBytes returns a run's largest cache memory over its batches, by kind (nil when the
// run kept no cache).
func (db *DB) PeakCacheBytes(runID int64) (map[string]int64, error) {
	rows, err := db.db.Query(`SELECT kind, max(peak_bytes) FROM cache_bytes WHERE run_id = ? GROUP BY kind`, runID)
	if err != nil {
		return nil, db.errf("run %d cache bytes: %w", runID, err)
	}
	defer rows.Close()
	var out map[string]int64
	for rows.Next() {
		var kind string
		var n int64
		if err := rows.Scan(&kind, &n); err != nil {
			return nil, db.errf("run %d cache bytes: %w", runID, err)
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[kind] = n
	}
	return out, rows.Err()
}
