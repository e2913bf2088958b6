package reports

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/harness/store"
)

// BaselineMethod is the method every speedup is measured against: the uncached model.
const BaselineMethod = "none"

// stepsMethod is the fewer-steps baseline; its runs store the reduced step count, so their
// baseline is found among the none runs of any step count (see resolveKey).
const stepsMethod = "steps"

// Value is a number that may be unknown: unknown values render as "–" and are never plotted.
type Value struct {
	V     float64 // V is the number; meaningful only when Known.
	Known bool    // Known says the databases hold (or determine) the number.
}

func known(v float64) Value { return Value{V: v, Known: true} }

// ratio returns a/b when both are known and positive, else unknown.
func ratio(a, b Value) Value {
	if !a.Known || !b.Known || a.V <= 0 || b.V <= 0 {
		return Value{}
	}
	return known(a.V / b.V)
}

// Key identifies the runs measured against one baseline: same model and weights, sampler,
// step count, guidance scale and seed (hence the same initial noise). One key is one table.
type Key struct {
	Model    string  // Model is the model name.
	Weights  string  // Weights is the weights hash (runs of other weights are another model).
	Sampler  string  // Sampler is the sampler name.
	Steps    int     // Steps is the number of sampling steps.
	CFGScale float64 // CFGScale is the classifier-free guidance scale.
	Seed     int64   // Seed is the base seed.
}

// Title names the key for humans, e.g. "DiT-XL/2, ddim, 50 steps, cfg 1.5, seed 0".
func (k Key) Title() string {
	model := k.Model
	if model == "" {
		model = "unknown model"
	}
	sampler := k.Sampler
	if sampler == "" {
		sampler = "unknown sampler"
	}
	return fmt.Sprintf("%s, %s, %d steps, cfg %s, seed %d", model, sampler, k.Steps, fmtFloat(k.CFGScale), k.Seed)
}

// Row is one finished run as the report shows it.
type Row struct {
	Source         string                  // Source is the database file the run was read from.
	Run            store.Run               // Run is the stored run row.
	Method         string                  // Method is the method family (the run's method).
	Setting        string                  // Setting is the method's parameters, e.g. "N=3, ratio=0.07".
	Key            Key                     // Key is the row's table; for the fewer-steps method, its baseline's key.
	FLOPs          Value                   // FLOPs is the compute of one image (all steps, CFG rows included).
	BaselineFLOPs  Value                   // BaselineFLOPs is the runner's count for method none, used when no none run is loaded.
	Latency        Value                   // Latency is the wall clock of one image in milliseconds.
	LatencyFrom    string                  // LatencyFrom says which measurements gave Latency.
	Metrics        map[string]store.Metric // Metrics are the run's metrics by name (one per name, see Load).
	Baseline       *Row                    // Baseline is the none run the speedups are relative to (nil if missing).
	FLOPsSpeedup   Value                   // FLOPsSpeedup is the baseline's FLOPs over the row's.
	LatencySpeedup Value                   // LatencySpeedup is the baseline's latency over the row's.
	CompileMS      float64                 // CompileMS is the graph compilation the run spent, not in Latency.
	StageMS        [2]float64              // StageMS is the time of latent decoding (VAE or fixed) and of feature extraction (stage timings).
	StageImages    [2]int                  // StageImages is how many images each stage timed.
	CacheBytes     Value                   // CacheBytes is the run's peak cache memory in bytes (unknown: no cache kept).
	Published      *Published              // Published is the paper's numbers for this configuration (nil: none given).

	loadNotes []string // what reading the run found odd, for Data.Notes
}

// label names a row in notes: method, setting, run id and database.
func (r *Row) label() string {
	s := r.Method
	if r.Setting != "" {
		s += " " + r.Setting
	}
	return fmt.Sprintf("%s (run %d of %s)", s, r.Run.ID, filepath.Base(r.Source))
}

// Group is the rows of one key: one paper table, one set of figures.
type Group struct {
	Key   Key      // Key is what the rows share.
	Title string   // Title is Key.Title, made unique among the groups (weights hash appended if needed).
	Rows  []*Row   // Rows are ordered: baseline, fewer steps, then the other families in load order.
	Notes []string // Notes say what the reader must know about the group's numbers.
}

// Source describes one loaded database.
type Source struct {
	Path    string // Path is the file as given.
	Schema  int    // Schema is its schema version.
	Runs    int    // Runs is the number of runs it holds.
	Skipped int    // Skipped is the number of runs not reported (unfinished or duplicated).
}

// Data is everything a report shows, read from the databases.
type Data struct {
	Sources []Source // Sources are the databases in the order given.
	Groups  []*Group // Groups are in order of first appearance.
	Notes   []string // Notes concern all groups (skipped runs, missing FLOPs).
}

// FLOPsCount is what a FLOPsFunc knows about the compute of a run.
type FLOPsCount struct {
	PerImage Value // PerImage is the FLOPs of one image: every sampling call, CFG rows included.
	Baseline Value // Baseline is the same count under method none with the same schedule, when counted alongside.
}

// FLOPsFunc returns the FLOPs of a run; unknown values stay unknown. It is the hook through
// which FLOPs reach the report: StoredFLOPs reads what the runner stored, and a source that knows
// more (a replay of the method's schedule for databases written before FLOPs were stored) plugs
// in here.
type FLOPsFunc func(db *store.DB, run store.Run) (FLOPsCount, error)

// Options tune LoadWith.
type Options struct {
	FLOPs FLOPsFunc // FLOPs gives a run's FLOPs per image; nil means StoredFLOPs.
	// Published gives what a paper reports for a run's method and parameters (nil: nothing),
	// shown in a column beside each measured quantity.
	Published func(method string, params map[string]any) *Published
}

// Published is what a paper reports for one configuration.
type Published struct {
	Values map[string]float64 // metric names, flops_speedup, latency_speedup
	Source string
}

// ErrNoRuns reports a database that holds no runs.
var ErrNoRuns = errors.New("holds no runs")

// Load reads the runs, metrics and timings of the databases (read-only) with default options.
func Load(paths ...string) (*Data, error) { return LoadWith(Options{}, paths...) }

// LoadWith reads the runs, metrics and timings of the databases (read-only), groups them by
// key and computes the speedups against each key's none run.
func LoadWith(opts Options, paths ...string) (*Data, error) {
	if len(paths) == 0 {
		return nil, errors.New("no database given")
	}
	if opts.FLOPs == nil {
		opts.FLOPs = StoredFLOPs
	}
	d := &Data{}
	var rows []*Row
	seen := map[string]*Row{} // config hash → first row, to drop the same run read twice
	for _, p := range paths {
		src, rs, notes, err := loadOne(p, opts, seen)
		if err != nil {
			return nil, err
		}
		d.Sources = append(d.Sources, src)
		d.Notes = append(d.Notes, notes...)
		rows = append(rows, rs...)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no finished runs to report (see the status column of the runs table)", strings.Join(paths, ", "))
	}
	d.group(rows)
	var compile float64
	for _, r := range rows {
		compile += r.CompileMS
	}
	// On the pure-Go backend compilation takes milliseconds; on a JIT backend (XLA) seconds.
	if compile >= 1000 {
		d.Notes = append(d.Notes, fmt.Sprintf("Latency excludes graph compilation: %.1f s over these runs (the `compile` timings), a one-time cost of a JIT backend.", compile/1000))
	}
	if !slices.ContainsFunc(rows, func(r *Row) bool { return r.FLOPs.Known }) {
		d.Notes = append(d.Notes, "FLOPs: the databases hold no FLOPs counts, so the FLOPs and FLOPs-speedup columns are blank and the FLOPs figures are omitted.")
	}
	return d, nil
}

// loadOne reads the finished runs of one database; runs already read from an earlier database
// (same config hash) are skipped with a note.
func loadOne(path string, opts Options, seen map[string]*Row) (Source, []*Row, []string, error) {
	db, err := store.OpenReadOnly(path)
	if err != nil {
		return Source{}, nil, nil, err
	}
	defer db.Close()
	runs, err := db.Runs()
	if err != nil {
		return Source{}, nil, nil, err
	}
	if len(runs) == 0 {
		return Source{}, nil, nil, fmt.Errorf("%s: %w (nothing has been run into it yet)", path, ErrNoRuns)
	}
	src := Source{Path: path, Schema: db.SchemaVersion(), Runs: len(runs)}
	var out []*Row
	var notes []string
	unfinished := map[string][]string{}
	for _, run := range runs {
		if run.Status != store.StatusDone {
			unfinished[run.Status] = append(unfinished[run.Status], strconv.FormatInt(run.ID, 10))
			src.Skipped++
			continue
		}
		r := &Row{Source: path, Run: run, Method: run.Method}
		if prev, ok := seen[run.ConfigHash]; ok {
			src.Skipped++
			notes = append(notes, fmt.Sprintf("Run %d of %s has the same configuration as run %d of %s; only the first is reported.",
				run.ID, filepath.Base(path), prev.Run.ID, filepath.Base(prev.Source)))
			continue
		}
		seen[run.ConfigHash] = r
		if err := r.fill(db, opts); err != nil {
			return Source{}, nil, nil, err
		}
		notes = append(notes, r.loadNotes...)
		out = append(out, r)
	}
	for _, st := range []string{store.StatusRunning, store.StatusFailed} {
		if ids := unfinished[st]; len(ids) > 0 {
			hint := ""
			if st == store.StatusRunning {
				hint = " (a shard's runs stay running until `runbench merge` combines the shards)"
			}
			notes = append(notes, fmt.Sprintf("%s: %d %s run(s) not reported: %s%s.", filepath.Base(path), len(ids), st, strings.Join(ids, ", "), hint))
		}
	}
	return src, out, notes, nil
}

// config is the part of a run's canonical config JSON the report reads.
type config struct {
	Method string         `json:"method"`
	Params map[string]any `json:"params"`
}

// fill reads the run's setting, FLOPs, latency and metrics.
func (r *Row) fill(db *store.DB, opts Options) error {
	var c config
	if err := json.Unmarshal([]byte(r.Run.ConfigJSON), &c); err != nil {
		// EnsureRun stores valid JSON only, so this is a file written by hand: report it, don't fail.
		r.loadNotes = append(r.loadNotes, fmt.Sprintf("Run %d of %s: config_json is not a JSON object (%v); its setting is blank.", r.Run.ID, filepath.Base(r.Source), err))
	}
	if r.Method == "" {
		r.Method = c.Method
	}
	if r.Method == "" {
		r.Method = "unknown"
	}
	r.Setting = formatParams(c.Params)
	if opts.Published != nil {
		r.Published = opts.Published(c.Method, c.Params)
	}
	r.Key = Key{Model: r.Run.Model, Weights: r.Run.WeightsHash, Sampler: r.Run.Sampler, Steps: r.Run.Steps, CFGScale: r.Run.CFGScale, Seed: r.Run.Seed}

	fc, err := opts.FLOPs(db, r.Run)
	if err != nil {
		return fmt.Errorf("%s: run %d FLOPs: %w", r.Source, r.Run.ID, err)
	}
	r.FLOPs, r.BaselineFLOPs = positive(fc.PerImage), positive(fc.Baseline)
	if r.Latency, r.LatencyFrom, err = latency(db.SQL(), r.Run.ID); err != nil {
		return fmt.Errorf("%s: run %d timings: %w", r.Source, r.Run.ID, err)
	}
	peak, err := db.PeakCacheBytes(r.Run.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", r.Source, err)
	}
	if peak != nil {
		r.CacheBytes = known(float64(peak["total"]))
	}
	// Compilation and the stages after sampling, in one pass over the run's timings.
	rows, err := db.SQL().Query(`SELECT scope, name, sum(count), sum(total_ms) FROM timings
		WHERE run_id = ? AND (name = 'compile' OR scope = 'stage') GROUP BY scope, name`, r.Run.ID)
	if err != nil {
		return fmt.Errorf("%s: run %d timings: %w", r.Source, r.Run.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var scope, name string
		var n sql.NullInt64
		var ms sql.NullFloat64
		if err := rows.Scan(&scope, &name, &n, &ms); err != nil {
			return fmt.Errorf("%s: run %d timings: %w", r.Source, r.Run.ID, err)
		}
		switch {
		case name == "compile":
			r.CompileMS += ms.Float64
		case scope == "stage" && name == "decode":
			r.StageImages[0], r.StageMS[0] = int(n.Int64), ms.Float64
		case scope == "stage" && name == "features":
			r.StageImages[1], r.StageMS[1] = int(n.Int64), ms.Float64
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: run %d timings: %w", r.Source, r.Run.ID, err)
	}
	return r.readMetrics(db.SQL())
}

// latency returns the milliseconds per image of a run, from the most specific measurement
// stored: the per-image sampling timings, else the per-step timings over the batches they
// cover, else the batches' wall clock. Run-level timings (compilation) are not per image and
// are left out.
func latency(db *sql.DB, runID int64) (Value, string, error) {
	var n sql.NullInt64
	var total sql.NullFloat64
	err := db.QueryRow(`SELECT sum(count), sum(total_ms) FROM timings
		WHERE run_id = ? AND batch_index IS NOT NULL AND scope = 'image'`, runID).Scan(&n, &total)
	if err != nil {
		return Value{}, "", err
	}
	if n.Int64 > 0 && total.Valid && total.Float64 > 0 {
		return known(total.Float64 / float64(n.Int64)), "image timings", nil
	}
	err = db.QueryRow(`SELECT (SELECT sum(num_samples) FROM batches b WHERE b.run_id = ?1 AND b.batch_index IN
			(SELECT batch_index FROM timings WHERE run_id = ?1 AND scope = 'step')),
		(SELECT sum(total_ms) FROM timings WHERE run_id = ?1 AND batch_index IS NOT NULL AND scope = 'step')`, runID).Scan(&n, &total)
	if err != nil {
		return Value{}, "", err
	}
	if n.Int64 > 0 && total.Valid && total.Float64 > 0 {
		return known(total.Float64 / float64(n.Int64)), "step timings", nil
	}
	err = db.QueryRow(`SELECT sum(num_samples), sum(wall_ms) FROM batches
		WHERE run_id = ? AND wall_ms IS NOT NULL AND wall_ms > 0`, runID).Scan(&n, &total)
	if err != nil {
		return Value{}, "", err
	}
	if n.Int64 > 0 && total.Valid && total.Float64 > 0 {
		return known(total.Float64 / float64(n.Int64)), "batch wall clock", nil
	}
	return Value{}, "", nil
}

// readMetrics keeps one value per metric name: the one over the most samples, then the newest.
// Several values of a name mean several references or extractors; the note names the one shown.
func (r *Row) readMetrics(db *sql.DB) error {
	rows, err := db.Query(`SELECT name, value, n, reference, extractor, resize FROM metrics WHERE run_id = ?
		ORDER BY name, n DESC, created_at DESC, reference, extractor`, r.Run.ID)
	if err != nil {
		return fmt.Errorf("%s: run %d metrics: %w", r.Source, r.Run.ID, err)
	}
	defer rows.Close()
	r.Metrics = map[string]store.Metric{}
	count := map[string]int{}
	for rows.Next() {
		var m store.Metric
		if err := rows.Scan(&m.Name, &m.Value, &m.N, &m.Reference, &m.Extractor, &m.Resize); err != nil {
			return fmt.Errorf("%s: run %d metrics: %w", r.Source, r.Run.ID, err)
		}
		count[m.Name]++
		if _, ok := r.Metrics[m.Name]; !ok {
			r.Metrics[m.Name] = m
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: run %d metrics: %w", r.Source, r.Run.ID, err)
	}
	for _, name := range sortedKeys(count) {
		if count[name] > 1 {
			m := r.Metrics[name]
			r.loadNotes = append(r.loadNotes, fmt.Sprintf("Run %d of %s has %d %s values (other references or extractors); shown: n=%d against %q with %q.",
				r.Run.ID, filepath.Base(r.Source), count[name], name, m.N, m.Reference, m.Extractor))
		}
	}
	return nil
}

// StoredFLOPs is the default FLOPsFunc: the counts the runner stored (schema v4). The planned
// count per image of run_flops (the papers' convention, with none's count on the reference
// schedule) comes first; else what the batches executed over the images they cover, when every
// batch was counted.
func StoredFLOPs(db *store.DB, run store.Run) (FLOPsCount, error) {
	var fc FLOPsCount
	planned, err := db.RunFLOPs(run.ID)
	if err != nil {
		return fc, err
	}
	if planned != nil {
		fc.PerImage = known(float64(planned.PerImage))
		fc.Baseline = known(float64(planned.BasePerImage))
		return fc, nil
	}
	flops, counted, err := db.ExecutedFLOPs(run.ID)
	if err != nil {
		return fc, err
	}
	var all sql.NullInt64
	if err := db.SQL().QueryRow(`SELECT sum(num_samples) FROM batches WHERE run_id = ?`, run.ID).Scan(&all); err != nil {
		return fc, err
	}
	// A partly counted run would understate its FLOPs per image: all batches or nothing.
	if counted > 0 && int64(counted) == all.Int64 {
		fc.PerImage = known(float64(flops) / float64(counted))
	}
	return fc, nil
}

func positive(v Value) Value {
	if !v.Known || !(v.V > 0) || math.IsInf(v.V, 0) {
		return Value{}
	}
	return v
}

// formatParams renders a method's parameters as "k=v, k=v" in key order.
func formatParams(p map[string]any) string {
	parts := make([]string, 0, len(p))
	for _, k := range sortedKeys(p) {
		parts = append(parts, k+"="+formatParam(p[k]))
	}
	return strings.Join(parts, ", ")
}

func formatParam(v any) string {
	switch x := v.(type) {
	case float64:
		return fmtFloat(x)
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// fmtFloat prints the shortest decimal that reads back as f (0.07, 3, 1.5).
func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
