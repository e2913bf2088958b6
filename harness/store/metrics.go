package store

import (
	"strings"
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

// Names of the CLIP scores of a text-to-image run (runbench clipscore --db): torchmetrics'
// max(mean_i 100·cos_i, 0), and the mean of the per-pair clamped max(100·cos_i, 0).
const (
	MetricCLIPScore             = "clip_score"
	MetricCLIPScorePairsClamped = "clip_score_pairs_clamped"
)

// clipPrefix and clipSep shape a CLIP score's extractor id (CLIPExtractor).
const (
	clipPrefix = "CLIP "
	clipSep    = "; "
)

// CLIPExtractor is the extractor id a CLIP score is stored with: "CLIP <model>; <weights>;
// <value range>", e.g. "CLIP ViT-L/14; ViT-L-14.safetensors sha256:b8cca3fd41ae; uint8". The
// value range belongs to the key, not only to the resize column, because scores of one model
// under two preprocessings differ by several points: recomputing with another range adds a row
// instead of overwriting the first.
func CLIPExtractor(model, weights, valueRange string) string {
	return clipPrefix + model + clipSep + weights + clipSep + valueRange
}

// CLIPModel reads the model and value range back from a CLIPExtractor id; ok is false for the
// ids of other extractors.
func CLIPModel(extractor string) (model, valueRange string, ok bool) {
	rest, found := strings.CutPrefix(extractor, clipPrefix)
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, clipSep)
	// The weights' file name may itself hold the separator; model and range never do.
	if len(parts) < 3 || parts[0] == "" || parts[len(parts)-1] == "" {
		return "", "", false
	}
	return parts[0], parts[len(parts)-1], true
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
