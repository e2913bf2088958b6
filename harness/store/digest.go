package store

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
)

// ResultRows lists, one line per row in a canonical order, everything in the file that a result
// depends on, and nothing that depends on how the work was split: runs (config hash and JSON,
// number of samples, status), samples (index, label, prompt, noise seed, output hash, SHA-256
// of the features), the sample ranges the batches cover (merged, since shard boundaries split
// batches differently), metrics (values as exact float bits) and planned FLOPs. Ids, times,
// timings, batch boundaries, output paths, devices, git revisions and step statistics are left
// out. An unsharded run and its sharded, interrupted or merged equivalents have the same rows.
func (db *DB) ResultRows() ([]string, error) {
	rl := &resultLines{db: db.db}
	for _, section := range []func(*resultLines) error{runLines, sampleLines, coveredLines, metricLines, flopsLines} {
		if err := section(rl); err != nil {
			return nil, db.errf("result rows: %w", err)
		}
	}
	return rl.out, nil
}

// resultLines gathers the lines of ResultRows, section by section.
type resultLines struct {
	db  *sql.DB
	out []string
}

// add appends a line for every row of query, as scan writes it (an empty line is left out, for
// sections that emit their lines themselves).
func (rl *resultLines) add(query string, scan func(*sql.Rows) (string, error)) error {
	rows, err := rl.db.Query(query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		line, err := scan(rows)
		if err != nil {
			return err
		}
		if line != "" {
			rl.out = append(rl.out, line)
		}
	}
	return rows.Err()
}

// quoteOrNull writes a nullable string so that NULL and "NULL" differ.
func quoteOrNull(s sql.NullString) string {
	if !s.Valid {
		return "NULL"
	}
	return fmt.Sprintf("%q", s.String)
}

// runLines lists the runs by config hash.
func runLines(rl *resultLines) error {
	return rl.add(`SELECT config_hash, config_json, num_samples, status FROM runs ORDER BY config_hash`, func(r *sql.Rows) (string, error) {
		var h, j, s string
		var n int
		if err := r.Scan(&h, &j, &n, &s); err != nil {
			return "", err
		}
		return fmt.Sprintf("run %s samples=%d status=%s config=%s", h, n, s, j), nil
	})
}

// sampleLines lists the samples by run and index, with a digest of their features (they are
// too long to list).
func sampleLines(rl *resultLines) error {
	return rl.add(`SELECT r.config_hash, s.sample_index, s.label, s.prompt, s.noise_seed, s.output_hash, s.features
		FROM samples s JOIN runs r ON r.id = s.run_id ORDER BY r.config_hash, s.sample_index`, func(r *sql.Rows) (string, error) {
		var (
			h            string
			i            int
			seed         int64
			label        sql.NullInt64
			prompt, hash sql.NullString
			feats        []byte
		)
		if err := r.Scan(&h, &i, &label, &prompt, &seed, &hash, &feats); err != nil {
			return "", err
		}
		l := "NULL"
		if label.Valid {
			l = fmt.Sprint(label.Int64)
		}
		f := "NULL"
		if feats != nil {
			sum := sha256.Sum256(feats)
			f = fmt.Sprintf("%d:%s", len(feats)/4, hex.EncodeToString(sum[:]))
		}
		return fmt.Sprintf("sample %s %d label=%s prompt=%s seed=%d output=%s features=%s", h, i, l, quoteOrNull(prompt), seed, quoteOrNull(hash), f), nil
	})
}

// coveredLines lists the sample ranges each run's batches cover, adjacent batches joined, so
// that how the work was cut into batches and shards does not show.
func coveredLines(rl *resultLines) error {
	var cur string
	var lo, hi int
	flush := func() {
		if cur != "" {
			rl.out = append(rl.out, fmt.Sprintf("covered %s [%d, %d)", cur, lo, hi))
		}
	}
	err := rl.add(`SELECT r.config_hash, b.first_sample, b.num_samples FROM batches b JOIN runs r ON r.id = b.run_id
		ORDER BY r.config_hash, b.first_sample`, func(r *sql.Rows) (string, error) {
		var h string
		var first, n int
		if err := r.Scan(&h, &first, &n); err != nil {
			return "", err
		}
		if h == cur && first == hi {
			hi = first + n
			return "", nil
		}
		flush()
		cur, lo, hi = h, first, first+n
		return "", nil
	})
	flush()
	return err
}

// metricLines lists the metrics, with their values' exact bits.
func metricLines(rl *resultLines) error {
	return rl.add(`SELECT r.config_hash, m.name, m.value, m.n, m.reference, m.extractor, m.resize FROM metrics m JOIN runs r ON r.id = m.run_id
		ORDER BY r.config_hash, m.name, m.reference, m.extractor`, func(r *sql.Rows) (string, error) {
		var h, name, ref, ex, resize string
		var v float64
		var n int
		if err := r.Scan(&h, &name, &v, &n, &ref, &ex, &resize); err != nil {
			return "", err
		}
		return fmt.Sprintf("metric %s %s=%v (bits %016x) n=%d reference=%q extractor=%q resize=%q", h, name, v, math.Float64bits(v), n, ref, ex, resize), nil
	})
}

// flopsLines lists the runs' planned FLOPs.
func flopsLines(rl *resultLines) error {
	return rl.add(`SELECT r.config_hash, f.flops_per_image, f.baseline_flops_per_image, f.speedup, f.rows_per_image, f.convention
		FROM run_flops f JOIN runs r ON r.id = f.run_id ORDER BY r.config_hash`, func(r *sql.Rows) (string, error) {
		var h, conv string
		var per, base int64
		var sp float64
		var rows int
		if err := r.Scan(&h, &per, &base, &sp, &rows, &conv); err != nil {
			return "", err
		}
		return fmt.Sprintf("flops %s per_image=%d baseline=%d speedup=%v rows=%d convention=%q", h, per, base, sp, rows, conv), nil
	})
}

// ResultDigest is the SHA-256 of ResultRows: equal digests mean equal results.
func (db *DB) ResultDigest() (string, error) {
	rows, err := db.ResultRows()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(strings.Join(rows, "\n")))
	return hex.EncodeToString(sum[:]), nil
}
