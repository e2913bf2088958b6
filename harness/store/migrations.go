package store

// migrations is the ordered list of schema migrations: migrations[i] brings the schema from
// version i to version i+1, so len(migrations) is the newest schema this build supports.
//
// The literal is keyed by version: adding schema version 2 is the one line `2: schemaV2,` (never
// edit an element that has shipped). Each element runs in its own BEGIN IMMEDIATE transaction together
// with the `PRAGMA user_version` bump, so a failing migration leaves the file at the previous
// version. foreign_keys is ON during migrations; a migration that rebuilds a table must start
// with `PRAGMA defer_foreign_keys = ON;`. Document every change in schema.md.
var migrations = []string{
	1: schemaV1,
	2: schemaV2,
	3: schemaV3,
	4: schemaV4,
	5: schemaV5,
	6: schemaV6,
}[1:]

// schemaV1 creates the meta, runs, samples, batches and timings tables.
const schemaV1 = `
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES
	('application', 'cachebench'),
	('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE runs (
	id           INTEGER PRIMARY KEY,
	config_hash  TEXT    NOT NULL UNIQUE,
	config_json  TEXT    NOT NULL,
	method       TEXT,
	model        TEXT,
	weights_hash TEXT,
	sampler      TEXT,
	steps        INTEGER NOT NULL DEFAULT 0,
	cfg_scale    REAL    NOT NULL DEFAULT 0,
	seed         INTEGER NOT NULL DEFAULT 0,
	num_samples  INTEGER NOT NULL DEFAULT 0,
	batch_size   INTEGER NOT NULL DEFAULT 0,
	backend      TEXT,
	device       TEXT,
	git_rev      TEXT,
	status       TEXT    NOT NULL DEFAULT 'running'
	             CHECK (status IN ('running', 'done', 'failed')),
	created_at   TEXT    NOT NULL,
	updated_at   TEXT    NOT NULL
);

CREATE TABLE batches (
	run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	batch_index  INTEGER NOT NULL CHECK (batch_index >= 0),
	first_sample INTEGER NOT NULL CHECK (first_sample >= 0),
	num_samples  INTEGER NOT NULL CHECK (num_samples > 0),
	wall_ms      REAL,
	finished_at  TEXT    NOT NULL,
	PRIMARY KEY (run_id, batch_index)
);

CREATE TABLE samples (
	run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	sample_index INTEGER NOT NULL CHECK (sample_index >= 0),
	label        INTEGER,
	prompt       TEXT,
	noise_seed   INTEGER NOT NULL,
	output_path  TEXT,
	output_hash  TEXT,
	features     BLOB,
	PRIMARY KEY (run_id, sample_index)
);

CREATE TABLE timings (
	id          INTEGER PRIMARY KEY,
	run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	batch_index INTEGER,
	scope       TEXT    NOT NULL,
	name        TEXT    NOT NULL DEFAULT '',
	count       INTEGER NOT NULL CHECK (count >= 0),
	total_ms    REAL    NOT NULL,
	p50_ms      REAL,
	p90_ms      REAL,
	FOREIGN KEY (run_id, batch_index) REFERENCES batches (run_id, batch_index) ON DELETE CASCADE
);
CREATE INDEX timings_run_batch ON timings (run_id, batch_index);
`

// schemaV2 adds the metrics table: one row per (run, metric name, reference, extractor).
const schemaV2 = `
CREATE TABLE metrics (
	run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	value      REAL    NOT NULL,
	n          INTEGER NOT NULL,
	reference  TEXT    NOT NULL DEFAULT '',
	extractor  TEXT    NOT NULL DEFAULT '',
	resize     TEXT    NOT NULL DEFAULT '',
	created_at TEXT    NOT NULL,
	PRIMARY KEY (run_id, name, reference, extractor)
);
`

// schemaV3 adds step_stats: per-step feature dynamics and cache error (see schema.md).
const schemaV3 = `
CREATE TABLE step_stats (
	run_id         INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	sample         INTEGER,
	call           INTEGER NOT NULL,
	step           INTEGER NOT NULL,
	timestep       INTEGER NOT NULL,
	block          INTEGER NOT NULL,
	module         TEXT    NOT NULL,
	action         TEXT,
	fresh_tokens   INTEGER,
	flops          INTEGER,
	dyn_rel_l1     REAL,
	dyn_rel_l2     REAL,
	dyn_tok_mean   REAL,
	dyn_tok_std    REAL,
	dyn_tok_p50    REAL,
	dyn_tok_p90    REAL,
	dyn_tok_p99    REAL,
	err_rel_l1     REAL,
	err_rel_l2     REAL,
	err_tok_mean   REAL,
	err_tok_std    REAL,
	err_tok_p50    REAL,
	err_tok_p90    REAL,
	err_tok_p99    REAL,
	err_fresh_rel_l2  REAL,
	err_cached_rel_l2 REAL,
	tokens         TEXT
);
CREATE INDEX step_stats_key ON step_stats (run_id, step, block, module);
CREATE INDEX step_stats_sample ON step_stats (run_id, sample);
`

// schemaV4 records FLOPs: what each batch executed (from the plans that ran) and, per run, the
// planned FLOPs per image with the speedup over method none (the papers' convention).
const schemaV4 = `
ALTER TABLE batches ADD COLUMN flops INTEGER CHECK (flops IS NULL OR flops >= 0);

CREATE TABLE run_flops (
	run_id                   INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
	flops_per_image          INTEGER NOT NULL CHECK (flops_per_image >= 0),
	baseline_flops_per_image INTEGER NOT NULL CHECK (baseline_flops_per_image >= 0),
	speedup                  REAL    NOT NULL,
	rows_per_image           INTEGER NOT NULL CHECK (rows_per_image > 0),
	convention               TEXT    NOT NULL
);
`

// schemaV5 records the memory a batch's caches held: the peak over its model calls of the bytes
// of every cached tensor, in total and per kind of content (module outputs by module, Taylor
// histories, token state, block-range residuals).
const schemaV5 = `
CREATE TABLE cache_bytes (
	run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	batch_index INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	peak_bytes  INTEGER NOT NULL CHECK (peak_bytes >= 0),
	PRIMARY KEY (run_id, batch_index, kind)
);
`

// schemaV6 adds calibrations: what `runbench calibrate` measured for the threshold caches on one
// model, weights, sampler, step schedule and guidance scale (one row per key: a new calibration
// replaces the old). Calibrations belong to no run, since every run of that key may use them.
const schemaV6 = `
CREATE TABLE calibrations (
	model        TEXT    NOT NULL,
	weights_hash TEXT    NOT NULL,
	sampler      TEXT    NOT NULL,
	steps        TEXT    NOT NULL,
	cfg_scale    REAL    NOT NULL,
	num_steps    INTEGER NOT NULL CHECK (num_steps > 0),
	num_samples  INTEGER NOT NULL CHECK (num_samples > 0),
	seed         INTEGER NOT NULL,
	calibration  TEXT    NOT NULL,
	git_rev      TEXT,
	created_at   TEXT    NOT NULL,
	PRIMARY KEY (model, weights_hash, sampler, steps, cfg_scale)
);
`
