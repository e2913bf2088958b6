package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CalibrationKey is what a calibration is valid for: the statistics threshold caches read depend
// on the network, its weights, the sampler's schedule and the guidance mixing the outputs.
type CalibrationKey struct {
	Model       string  // the model's architecture, as runs.model names it
	WeightsHash string  // as runs.weights_hash
	Sampler     string  // ddim, ddpm, dpmpp
	Steps       string  // the step spec as the configuration writes it ("50", "ddim50", "10,15,25")
	CFGScale    float64 // guidance scale
}

// String names the key in messages.
func (k CalibrationKey) String() string {
	return fmt.Sprintf("%s (weights %.12s), %s steps %s, cfg %g", k.Model, k.WeightsHash, k.Sampler, k.Steps, k.CFGScale)
}

// Calibration is one row of the calibrations table.
type Calibration struct {
	CalibrationKey
	NumSteps   int    // sampling calls of the schedule
	NumSamples int    // samples the statistics were measured on
	Seed       int64  // seed of their noise and labels
	JSON       string // the calibration file's content (methods.Calibration)
	GitRev     string
	CreatedAt  string // UTC RFC 3339; set by PutCalibration
}

// PutCalibration stores a calibration, replacing any earlier one of the same key.
func (db *DB) PutCalibration(c Calibration) error {
	k := c.CalibrationKey
	switch {
	case k.Model == "" || k.WeightsHash == "" || k.Sampler == "" || k.Steps == "":
		return db.errf("calibration %s: model, weights hash, sampler and steps are all required", k)
	case !finite(k.CFGScale) || c.NumSteps <= 0 || c.NumSamples <= 0:
		return db.errf("calibration %s: %d steps over %d samples is not storable", k, c.NumSteps, c.NumSamples)
	case !json.Valid([]byte(c.JSON)):
		return db.errf("calibration %s: the calibration is not valid JSON", k)
	}
	var rev any
	if c.GitRev != "" {
		rev = c.GitRev
	}
	if _, err := db.db.Exec(`INSERT OR REPLACE INTO calibrations (model, weights_hash, sampler, steps, cfg_scale, num_steps,
		num_samples, seed, calibration, git_rev, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.Model, k.WeightsHash, k.Sampler, k.Steps, k.CFGScale, c.NumSteps, c.NumSamples, c.Seed, c.JSON, rev, fmtTime(time.Now())); err != nil {
		return db.errf("calibration %s: %w", k, err)
	}
	return nil
}

const calibrationColumns = `model, weights_hash, sampler, steps, cfg_scale, num_steps, num_samples, seed, calibration, git_rev, created_at`

func scanCalibration(s interface{ Scan(...any) error }) (Calibration, error) {
	var c Calibration
	var rev sql.NullString
	err := s.Scan(&c.Model, &c.WeightsHash, &c.Sampler, &c.Steps, &c.CFGScale, &c.NumSteps, &c.NumSamples, &c.Seed, &c.JSON, &rev, &c.CreatedAt)
	c.GitRev = rev.String
	return c, err
}

// Calibration returns the calibration stored for a key (nil when there is none).
func (db *DB) Calibration(k CalibrationKey) (*Calibration, error) {
	c, err := scanCalibration(db.db.QueryRow(`SELECT `+calibrationColumns+` FROM calibrations
		WHERE model = ? AND weights_hash = ? AND sampler = ? AND steps = ? AND cfg_scale = ?`, k.Model, k.WeightsHash, k.Sampler, k.Steps, k.CFGScale))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, db.errf("calibration %s: %w", k, err)
	}
	return &c, nil
}

// Calibrations lists every stored calibration, by key.
func (db *DB) Calibrations() ([]Calibration, error) {
	rows, err := db.db.Query(`SELECT ` + calibrationColumns + ` FROM calibrations ORDER BY model, weights_hash, sampler, steps, cfg_scale`)
	if err != nil {
		return nil, db.errf("calibrations: %w", err)
	}
	defer rows.Close()
	var out []Calibration
	for rows.Next() {
		c, err := scanCalibration(rows)
		if err != nil {
			return nil, db.errf("calibrations: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, db.errf("calibrations: %w", err)
	}
	return out, nil
}
