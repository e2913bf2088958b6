package store

import (
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func tempPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "bench.db")
}

func mustOpen(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rawExec runs statements on path with a plain database/sql connection (no cachebench logic).
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, s := range stmts {
		if _, err := raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func newRun(t *testing.T, db *DB, name string) Run {
	t.Helper()
	cfg, err := CanonicalJSON(map[string]any{"method": name, "steps": 50})
	if err != nil {
		t.Fatal(err)
	}
	r, existed, err := db.EnsureRun(Run{ConfigJSON: string(cfg), Method: name, Model: "dit-xl-2", Steps: 50, CFGScale: 1.5, NumSamples: 8, BatchSize: 4})
	if err != nil || existed {
		t.Fatalf("EnsureRun: %v existed=%v", err, existed)
	}
	return r
}

func TestOpenFresh(t *testing.T) {
	path := tempPath(t)
	db := mustOpen(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if db.SchemaVersion() != len(migrations) || len(migrations) < 2 {
		t.Fatalf("schema version %d, migrations %d", db.SchemaVersion(), len(migrations))
	}
	if db.Path() != path {
		t.Fatalf("Path() = %q", db.Path())
	}
	var mode, app string
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	if v := queryInt(t, db.SQL(), "PRAGMA user_version"); v != len(migrations) {
		t.Fatalf("user_version %d", v)
	}
	if fk := queryInt(t, db.SQL(), "PRAGMA foreign_keys"); fk != 1 {
		t.Fatalf("foreign_keys %d", fk)
	}
	if err := db.SQL().QueryRow("SELECT value FROM meta WHERE key = 'application'").Scan(&app); err != nil || app != "cachebench" {
		t.Fatalf("application %q %v", app, err)
	}
	for _, tbl := range []string{"meta", "runs", "samples", "batches", "timings", "metrics"} {
		if n := queryInt(t, db.SQL(), "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", tbl); n != 1 {
			t.Errorf("table %s missing", tbl)
		}
	}
	if n := queryInt(t, db.SQL(), "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'future_stats'"); n != 0 {
		t.Error("future_stats must not exist before its migration")
	}
	// A path with URI-special characters works.
	odd := filepath.Join(t.TempDir(), "a?b#c%20d.db")
	db2 := mustOpen(t, odd)
	if _, err := os.Stat(odd); err != nil {
		t.Fatalf("file with odd name not created: %v", err)
	}
	db2.Close()
}

func TestReopenIdempotent(t *testing.T) {
	path := tempPath(t)
	db := mustOpen(t, path)
	r := newRun(t, db, "fora")
	db.Close()
	for i := 0; i < 2; i++ {
		db2 := mustOpen(t, path)
		if db2.SchemaVersion() != len(migrations) {
			t.Fatalf("version %d", db2.SchemaVersion())
		}
		if n := queryInt(t, db2.SQL(), "SELECT count(*) FROM meta"); n != 2 {
			t.Fatalf("meta rows %d", n)
		}
		got, err := db2.Run(r.ID)
		if err != nil || got.ConfigHash != r.ConfigHash {
			t.Fatalf("run after reopen: %+v %v", got, err)
		}
		db2.Close()
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if runs, err := ro.Runs(); err != nil || len(runs) != 1 {
		t.Fatalf("read-only runs %v %v", runs, err)
	}
	if err := ro.SetStatus(r.ID, StatusDone); err == nil {
		t.Fatal("write through a read-only store succeeded")
	}
}

func TestEnsureRun(t *testing.T) {
	db := mustOpen(t, tempPath(t))
	cfg := `{"method":"fora","steps":50}`
	in := Run{ConfigJSON: cfg, Method: "fora", Model: "dit", Sampler: "ddim", Steps: 50, CFGScale: 4, Seed: -7,
		NumSamples: 10, BatchSize: 5, Backend: "xla:cuda", GitRev: "abc"}
	r, existed, err := db.EnsureRun(in)
	if err != nil || existed {
		t.Fatalf("insert: %v %v", existed, err)
	}
	if r.ID == 0 || r.ConfigHash != ConfigHash([]byte(cfg)) || r.Status != StatusRunning || r.CreatedAt.IsZero() ||
		r.CreatedAt.Location().String() != "UTC" || r.Seed != -7 || r.CFGScale != 4 || r.Sampler != "ddim" || r.Device != "" {
		t.Fatalf("inserted run %+v", r)
	}
	var device sql.NullString
	if err := db.SQL().QueryRow("SELECT device FROM runs WHERE id = ?", r.ID).Scan(&device); err != nil || device.Valid {
		t.Fatalf("empty device should be NULL: %v %v", device, err)
	}
	var created string
	db.SQL().QueryRow("SELECT created_at FROM runs WHERE id = ?", r.ID).Scan(&created)
	if !strings.HasSuffix(created, "Z") || len(created) != len("2006-01-02T15:04:05Z") {
		t.Fatalf("created_at %q", created)
	}

	again, existed, err := db.EnsureRun(in)
	if err != nil || !existed || !reflect.DeepEqual(again, r) {
		t.Fatalf("existing: %+v %v %v", again, existed, err)
	}
	conflict := in
	conflict.ConfigHash = r.ConfigHash
	conflict.ConfigJSON = `{"method":"fora","steps":20}`
	if _, _, err := db.EnsureRun(conflict); err == nil || !strings.Contains(err.Error(), "different config_json") {
		t.Fatalf("conflict: %v", err)
	}
	if _, _, err := db.EnsureRun(Run{ConfigJSON: "{not json"}); err == nil {
		t.Fatal("invalid JSON accepted")
	}
	if _, _, err := db.EnsureRun(Run{ConfigJSON: "{}", Status: "paused"}); err == nil {
		t.Fatal("invalid status accepted")
	}
	r2, _, err := db.EnsureRun(Run{ConfigJSON: `{"method":"toca"}`})
	if err != nil {
		t.Fatal(err)
	}

	if got, err := db.RunByHash(r.ConfigHash); err != nil || got.ID != r.ID {
		t.Fatalf("RunByHash: %v %v", got, err)
	}
	if _, err := db.Run(999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Run(999): %v", err)
	}
	if _, err := db.RunByHash("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RunByHash(nope): %v", err)
	}
	runs, err := db.Runs()
	if err != nil || len(runs) != 2 || runs[0].ID != r.ID || runs[1].ID != r2.ID {
		t.Fatalf("Runs: %v %v", runs, err)
	}

	if err := db.SetStatus(r.ID, StatusDone); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Run(r.ID); got.Status != StatusDone {
		t.Fatalf("status %q", got.Status)
	}
	if err := db.SetStatus(r.ID, "bogus"); err == nil {
		t.Fatal("bogus status accepted")
	}
	if err := db.SetStatus(12345, StatusFailed); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetStatus unknown run: %v", err)
	}
	if _, err := db.SQL().Exec("UPDATE runs SET status = 'weird' WHERE id = ?", r.ID); err == nil {
		t.Fatal("CHECK on status missing")
	}
}

func testBatch(index, first, n int) Batch {
	b := Batch{Index: index, FirstSample: first, NumSamples: n, WallMS: 12.5}
	for i := first; i < first+n; i++ {
		label := i % 3
		s := Sample{Index: i, Label: &label, NoiseSeed: int64(1000 + i), OutputPath: fmt.Sprintf("out/%05d.png", i),
			Features: []float32{float32(i), -0.5, 3.25}}
		if i%2 == 1 {
			p := fmt.Sprintf("a photo #%d", i)
			s.Label, s.Prompt, s.OutputPath, s.Features = nil, &p, "", nil
		}
		b.Samples = append(b.Samples, s)
	}
	b.Timings = []Timing{
		{Scope: "step", Count: 50, TotalMS: 500, P50MS: 9.5, P90MS: 12},
		{Scope: "module:attn", Name: "block3", Count: 100, TotalMS: 80},
	}
	return b
}

func TestCommitBatch(t *testing.T) {
	db := mustOpen(t, tempPath(t))
	r := newRun(t, db, "fora")
	b1 := testBatch(1, 4, 4)
	if err := db.CommitBatch(r.ID, b1); err != nil {
		t.Fatal(err)
	}
	b0 := testBatch(0, 0, 4)
	if err := db.CommitBatch(r.ID, b0); err != nil {
		t.Fatal(err)
	}
	done, err := db.DoneBatches(r.ID)
	if err != nil || !reflect.DeepEqual(done, map[int]bool{0: true, 1: true}) {
		t.Fatalf("DoneBatches %v %v", done, err)
	}
	samples, err := db.Samples(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]Sample{}, b0.Samples...), b1.Samples...)
	if !reflect.DeepEqual(samples, want) {
		t.Fatalf("samples\n got %+v\nwant %+v", samples, want)
	}
	if err := db.AddTimings(r.ID, []Timing{{Scope: "overhead:compile", Count: 1, TotalMS: 3000}}); err != nil {
		t.Fatal(err)
	}
	timings, err := db.Timings(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantT := append([]Timing{{Scope: "overhead:compile", Count: 1, TotalMS: 3000}}, b0.Timings...)
	wantT = append(wantT, b1.Timings...)
	if !reflect.DeepEqual(timings, wantT) {
		t.Fatalf("timings\n got %+v\nwant %+v", timings, wantT)
	}
	if n := queryInt(t, db.SQL(), "SELECT count(*) FROM timings WHERE p90_ms IS NULL"); n != 3 {
		t.Fatalf("absent percentiles should be NULL, %d rows", n)
	}

	// Committing the same batch twice is an error and changes nothing.
	before := counts(t, db)
	b0.Samples = nil
	if err := db.CommitBatch(r.ID, b0); !errors.Is(err, ErrDuplicateBatch) {
		t.Fatalf("duplicate batch: %v", err)
	}
	if after := counts(t, db); after != before {
		t.Fatalf("counts changed: %v -> %v", before, after)
	}

	// Invalid batches.
	for name, b := range map[string]Batch{
		"out of range": {Index: 5, FirstSample: 20, NumSamples: 2, Samples: []Sample{{Index: 30}}},
		"overlap":      {Index: 6, FirstSample: 6, NumSamples: 4},
		"empty":        {Index: 7, FirstSample: 100, NumSamples: 0},
		"bad timing":   {Index: 8, FirstSample: 100, NumSamples: 1, Timings: []Timing{{Scope: ""}}},
	} {
		if err := db.CommitBatch(r.ID, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := db.CommitBatch(4242, testBatch(0, 0, 1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
	if err := db.AddTimings(4242, []Timing{{Scope: "x"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown run timings: %v", err)
	}
	if after := counts(t, db); after != before {
		t.Fatalf("counts changed: %v -> %v", before, after)
	}
}

func counts(t *testing.T, db *DB) [3]int {
	return [3]int{
		queryInt(t, db.SQL(), "SELECT count(*) FROM batches"),
		queryInt(t, db.SQL(), "SELECT count(*) FROM samples"),
		queryInt(t, db.SQL(), "SELECT count(*) FROM timings"),
	}
}

func TestCommitBatchAtomic(t *testing.T) {
	db := mustOpen(t, tempPath(t))
	r := newRun(t, db, "fora")
	if err := db.CommitBatch(r.ID, testBatch(0, 0, 4)); err != nil {
		t.Fatal(err)
	}
	before := counts(t, db)
	// The batch row and the first sample insert fine; the duplicate sample fails mid-transaction.
	b := testBatch(1, 4, 4)
	b.Samples[2].Index = b.Samples[1].Index
	err := db.CommitBatch(r.ID, b)
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") || !strings.HasPrefix(err.Error(), "store: "+db.Path()+": ") {
		t.Fatalf("duplicate sample index: %v", err)
	}
	if after := counts(t, db); after != before {
		t.Fatalf("partial batch written: %v -> %v", before, after)
	}
	if done, _ := db.DoneBatches(r.ID); done[1] {
		t.Fatal("failed batch marked done")
	}
	// The corrected batch then commits.
	if err := db.CommitBatch(r.ID, testBatch(1, 4, 4)); err != nil {
		t.Fatal(err)
	}
	if s, _ := db.Samples(r.ID); len(s) != 8 {
		t.Fatalf("%d samples", len(s))
	}
}

func TestCorruptFeaturesBlob(t *testing.T) {
	db := mustOpen(t, tempPath(t))
	r := newRun(t, db, "fora")
	if err := db.CommitBatch(r.ID, testBatch(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec("UPDATE samples SET features = x'010203'"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Samples(r.ID); err == nil || !strings.Contains(err.Error(), "multiple of 4") {
		t.Fatalf("corrupt blob: %v", err)
	}
	if _, err := db.SQL().Exec("UPDATE runs SET created_at = 'yesterday'"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Run(r.ID); err == nil || !strings.Contains(err.Error(), "created_at") {
		t.Fatalf("corrupt time: %v", err)
	}
}

func TestNotADatabase(t *testing.T) {
	path := tempPath(t)
	junk := make([]byte, 4096)
	rand.Read(junk)
	if err := os.WriteFile(path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(string) (*DB, error){Open, OpenReadOnly} {
		_, err := open(path)
		if !errors.Is(err, ErrNotSQLite) || err.Error() != "store: "+path+": is not an SQLite database" {
			t.Fatalf("random bytes: %v", err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != string(junk) {
		t.Fatal("file modified")
	}
	// A valid header followed by garbage is caught by SQLite itself, without a panic.
	copy(junk, sqliteMagic)
	os.WriteFile(path, junk, 0o644)
	_, err := Open(path)
	if err == nil || !strings.HasPrefix(err.Error(), "store: "+path+": ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("garbage after header: %v", err)
	}
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "missing.db")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory: %v", err)
	}
}

func TestForeignDatabase(t *testing.T) {
	path := tempPath(t)
	rawExec(t, path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
	for _, open := range []func(string) (*DB, error){Open, OpenReadOnly} {
		_, err := open(path)
		if !errors.Is(err, ErrNotCachebench) || !strings.HasPrefix(err.Error(), "store: "+path+": is an SQLite database but not a cachebench one") {
			t.Fatalf("foreign db: %v", err)
		}
	}
	raw, _ := sql.Open("sqlite3", path)
	defer raw.Close()
	var mode string
	raw.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "delete" {
		t.Fatalf("foreign database switched to journal_mode %q", mode)
	}
	if n := queryInt(t, raw, "SELECT count(*) FROM sqlite_master"); n != 1 {
		t.Fatalf("foreign database modified: %d objects", n)
	}

	// A versioned database with a meta table of another shape or application.
	other := tempPath(t)
	rawExec(t, other, "CREATE TABLE meta (k TEXT)", "PRAGMA user_version = 3")
	if _, err := Open(other); !errors.Is(err, ErrNotCachebench) {
		t.Fatalf("other meta: %v", err)
	}
	rawExec(t, other, "DROP TABLE meta", "CREATE TABLE meta (key TEXT, value TEXT)", "INSERT INTO meta VALUES ('application', 'other')")
	if _, err := Open(other); !errors.Is(err, ErrNotCachebench) {
		t.Fatalf("other application: %v", err)
	}
	// An empty SQLite file is not cachebench for reading, fine for writing.
	empty := tempPath(t)
	os.WriteFile(empty, nil, 0o644)
	if _, err := OpenReadOnly(empty); !errors.Is(err, ErrNotCachebench) {
		t.Fatalf("empty read-only: %v", err)
	}
	mustOpen(t, empty)
}

func TestNewerSchema(t *testing.T) {
	path := tempPath(t)
	db := mustOpen(t, path)
	db.Close()
	rawExec(t, path, "PRAGMA user_version = 99")
	want := fmt.Sprintf("store: %s: was written by a newer cachebench (schema v99, this build supports up to v%d)", path, len(migrations))
	for _, open := range []func(string) (*DB, error){Open, OpenReadOnly} {
		_, err := open(path)
		if !errors.Is(err, ErrNewerSchema) || err.Error() != want {
			t.Fatalf("got  %v\nwant %s", err, want)
		}
	}
}

const testV2 = `CREATE TABLE future_stats (run_id INTEGER NOT NULL REFERENCES runs (id), step INTEGER NOT NULL, fresh_tokens INTEGER);
ALTER TABLE runs ADD COLUMN note TEXT;`

func TestMigrationToNext(t *testing.T) {
	path := tempPath(t)
	db := mustOpen(t, path)
	r := newRun(t, db, "fora")
	if err := db.CommitBatch(r.ID, testBatch(0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	v2 := append(append([]string{}, migrations...), testV2)
	// A v1 file is too old for a v2 reader.
	if _, err := openWith(path, v2, true); !errors.Is(err, ErrOlderSchema) {
		t.Fatalf("read-only older: %v", err)
	}
	// A failing migration leaves the file at v1 with nothing of v2.
	bad := append(append([]string{}, migrations...), "CREATE TABLE future_stats (x INTEGER); SELECT * FROM no_such_table;")
	if _, err := openWith(path, bad, false); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migrate to schema v%d", len(migrations)+1)) {
		t.Fatalf("bad migration: %v", err)
	}
	db = mustOpen(t, path)
	if n := queryInt(t, db.SQL(), "SELECT count(*) FROM sqlite_master WHERE name = 'future_stats'"); n != 0 || db.SchemaVersion() != len(migrations) {
		t.Fatal("failed migration left traces")
	}
	db.Close()

	db2, err := openWith(path, v2, false)
	if err != nil {
		t.Fatal(err)
	}
	if db2.SchemaVersion() != len(v2) || queryInt(t, db2.SQL(), "PRAGMA user_version") != len(v2) {
		t.Fatalf("version %d", db2.SchemaVersion())
	}
	if _, err := db2.SQL().Exec("INSERT INTO future_stats (run_id, step, fresh_tokens) VALUES (?, 3, 10)", r.ID); err != nil {
		t.Fatal(err)
	}
	if s, err := db2.Samples(r.ID); err != nil || len(s) != 2 {
		t.Fatalf("data after migration: %v %v", s, err)
	}
	db2.Close()
	// Reopening with v2 is a no-op; the v1 build refuses the v2 file.
	db3, err := openWith(path, v2, true)
	if err != nil || db3.SchemaVersion() != len(v2) {
		t.Fatalf("reopen v2: %v", err)
	}
	db3.Close()
	if _, err := Open(path); !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema v%d, this build supports up to v%d", len(v2), len(migrations))) {
		t.Fatalf("v1 build on v2 file: %v", err)
	}
	// A fresh file gets both migrations.
	db4, err := openWith(tempPath(t), v2, false)
	if err != nil || db4.SchemaVersion() != len(v2) {
		t.Fatalf("fresh v2: %v", err)
	}
	db4.Close()
}

func TestConcurrentReaders(t *testing.T) {
	path := tempPath(t)
	db := mustOpen(t, path)
	r := newRun(t, db, "fora")
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	const batches, bs = 40, 4
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for reads := 0; !stop.Load() || reads == 0; reads++ {
				// One read transaction sees a consistent snapshot: every batch row has all its samples.
				tx, err := ro.SQL().Begin()
				if err != nil {
					errs <- err
					return
				}
				var nb, ns int
				err = tx.QueryRow("SELECT count(*) FROM batches").Scan(&nb)
				if err == nil {
					err = tx.QueryRow("SELECT count(*) FROM samples").Scan(&ns)
				}
				tx.Rollback()
				if err != nil {
					errs <- err
					return
				}
				if ns != nb*bs {
					errs <- fmt.Errorf("torn read: %d batches, %d samples", nb, ns)
					return
				}
				if _, err := db.Samples(r.ID); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < batches; i++ {
		if err := db.CommitBatch(r.ID, testBatch(i, i*bs, bs)); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if done, _ := ro.DoneBatches(r.ID); len(done) != batches {
		t.Fatalf("%d batches visible to reader", len(done))
	}
}

func TestCanonicalJSON(t *testing.T) {
	type inner struct {
		Z int    `json:"z"`
		A string `json:"a"`
	}
	type cfg struct {
		Steps  int     `json:"steps"`
		Method string  `json:"method"`
		Seed   int64   `json:"seed"`
		Inner  inner   `json:"inner"`
		CFG    float64 `json:"cfg"`
		Note   string  `json:"note"`
	}
	c := cfg{Steps: 50, Method: "fora", Seed: 1<<62 + 1, Inner: inner{Z: 1, A: "x"}, CFG: 1.5, Note: "<a&b>"}
	got, err := CanonicalJSON(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cfg":1.5,"inner":{"a":"x","z":1},"method":"fora","note":"<a&b>","seed":4611686018427387905,"steps":50}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	m := map[string]any{"steps": 50, "method": "fora", "seed": int64(1<<62 + 1), "inner": map[string]any{"z": 1, "a": "x"}, "cfg": 1.5, "note": "<a&b>"}
	if got2, _ := CanonicalJSON(m); string(got2) != want {
		t.Fatalf("map: %s", got2)
	}
	if h := ConfigHash([]byte("{}")); h != "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Fatalf("ConfigHash({}) = %s", h)
	}
	if _, err := CanonicalJSON(func() {}); err == nil {
		t.Fatal("func marshalled")
	}
}

// A closed database opens read-only as immutable (no -shm is written beside it, so a read-only
// folder works); one with a live writer's -wal opens with mode=ro and sees its commits.
func TestReadOnlyOpenMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.EnsureRun(Run{ConfigJSON: `{"method":"none"}`, Method: "none", NumSamples: 1, BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	if _, err := os.Stat(abs + "-wal"); err == nil {
		if p := readOnlyParams(abs); strings.Contains(p, "immutable") {
			t.Errorf("with a live writer's -wal: %q, want mode=ro without immutable", p)
		}
		ro, err := OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		if runs, err := ro.Runs(); err != nil || len(runs) != 1 {
			t.Errorf("read-only open beside a live writer: %d runs, %v", len(runs), err)
		}
		ro.Close()
	}
	db.Close()
	os.Remove(abs + "-shm")
	if p := readOnlyParams(abs); !strings.Contains(p, "immutable=1") {
		t.Fatalf("closed database: %q, want immutable", p)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if runs, err := ro.Runs(); err != nil || len(runs) != 1 {
		t.Errorf("immutable open: %d runs, %v", len(runs), err)
	}
	if _, err := os.Stat(abs + "-shm"); err == nil {
		t.Error("the immutable open wrote a -shm file beside the database")
	}
}
