// Package store is the SQLite results store of the harness: one file per sweep (or per shard),
// WAL mode, schema changes through numbered migrations. The schema is documented for SQL users
// in schema.md beside this file.
//
// A batch is written in one transaction (its samples, its timings and the batch row that marks
// it done), so a killed run resumes at the first batch that has no row in `batches`.
package store

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// Application is the value of the `application` key of the meta table that marks a cachebench file.
const Application = "cachebench"

// busyTimeoutMS is how long a connection waits for another writer's lock before failing.
const busyTimeoutMS = 30000

var (
	// ErrNotSQLite reports a file that is not an SQLite database.
	ErrNotSQLite = errors.New("is not an SQLite database")
	// ErrNotCachebench reports an SQLite database that cachebench did not create.
	ErrNotCachebench = errors.New("is an SQLite database but not a cachebench one")
	// ErrNewerSchema reports a file whose schema is newer than this build supports.
	ErrNewerSchema = errors.New("was written by a newer cachebench")
	// ErrOlderSchema reports a file opened read-only whose schema needs a migration first.
	ErrOlderSchema = errors.New("has an older cachebench schema")
	// ErrNotFound reports a run that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicateBatch reports a batch that is already committed.
	ErrDuplicateBatch = errors.New("batch already committed")
)

// sqliteMagic is the 16-byte header every SQLite 3 database file starts with.
var sqliteMagic = []byte("SQLite format 3\x00")

// DB is an open results store; it is safe for concurrent use.
type DB struct {
	db       *sql.DB
	path     string
	version  int
	readOnly bool
}

// Open opens the store at path read-write, creating it if absent and migrating it to the newest schema.
func Open(path string) (*DB, error) { return openWith(path, migrations, false) }

// OpenReadOnly opens an existing store for reading; its schema must be exactly the newest one.
func OpenReadOnly(path string) (*DB, error) { return openWith(path, migrations, true) }

// SchemaVersion returns the schema version of the open file.
func (db *DB) SchemaVersion() int { return db.version }

// Path returns the path the store was opened with.
func (db *DB) Path() string { return db.path }

// SQL returns the underlying pool for queries of other packages (read-write pools begin transactions IMMEDIATE).
func (db *DB) SQL() *sql.DB { return db.db }

// Close closes the store.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return db.errf("close: %w", err)
	}
	return nil
}

// errf formats an error prefixed with "store: <path>: ".
func (db *DB) errf(format string, args ...any) error {
	return pathErrf(db.path, format, args...)
}

func pathErrf(path, format string, args ...any) error {
	return fmt.Errorf("store: %s: "+format, append([]any{path}, args...)...)
}

// readOnlyParams chooses how a read-only open reads the file. Without a -wal file no writer is
// mid-transaction and every commit is in the main file, so the file is opened immutable: SQLite
// then creates no -shm and takes no lock, which lets report, inspect and merge read a database
// in a read-only folder (mode=ro alone needs to write the -shm beside it). With a -wal file a
// writer may be live, and its committed pages are only visible through the WAL: mode=ro.
func readOnlyParams(abs string) string {
	if _, err := os.Stat(abs + "-wal"); errors.Is(err, os.ErrNotExist) {
		return "&mode=ro&immutable=1"
	}
	return "&mode=ro"
}

// openWith opens path with the given migration list (tests inject longer lists).
func openWith(path string, migs []string, readOnly bool) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	for i, m := range migs {
		if strings.TrimSpace(m) == "" {
			return nil, pathErrf(path, "internal error: migration %d is empty", i+1)
		}
	}
	if err := checkHeader(path, readOnly); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, pathErrf(path, "%w", err)
	}
	params := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", busyTimeoutMS)
	if readOnly {
		params += readOnlyParams(abs)
	} else {
		params += "&_txlock=immediate"
	}
	sqldb, err := sql.Open("sqlite3", "file:"+uriEscape(abs)+"?"+params)
	if err != nil {
		return nil, pathErrf(path, "open: %w", err)
	}
	db := &DB{db: sqldb, path: path, readOnly: readOnly}
	if err := db.init(migs); err != nil {
		sqldb.Close()
		return nil, err
	}
	return db, nil
}

// init identifies the file, switches it to WAL and migrates it (read-write) or checks its version (read-only).
func (db *DB) init(migs []string) error {
	newest := len(migs)
	v, err := db.identify(newest)
	if err != nil {
		return err
	}
	if db.readOnly {
		switch {
		case v == 0:
			return db.errf("%w (empty database, no cachebench schema)", ErrNotCachebench)
		case v < newest:
			return db.errf("%w (schema v%d, this build reads v%d); open it read-write once to migrate it", ErrOlderSchema, v, newest)
		}
		db.version = v
		return nil
	}
	var mode string
	if err := db.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return db.readErr(err)
	}
	if !strings.EqualFold(mode, "wal") {
		if err := db.db.QueryRow("PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
			return db.errf("enable WAL mode: %w", err)
		}
		if !strings.EqualFold(mode, "wal") {
			return db.errf("cannot enable WAL mode (journal_mode stays %q)", mode)
		}
	}
	for next := v + 1; next <= newest; next++ {
		if err := db.migrate(next, migs[next-1]); err != nil {
			return err
		}
	}
	db.version = newest
	return nil
}

// identify returns the schema version of a cachebench file (0 for an empty database) or a clear error.
func (db *DB) identify(newest int) (int, error) {
	var v int
	if err := db.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return 0, db.readErr(err)
	}
	var objects int
	if err := db.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\'`).Scan(&objects); err != nil {
		return 0, db.readErr(err)
	}
	if v < 0 {
		return 0, db.errf("%w (invalid schema version %d)", ErrNotCachebench, v)
	}
	if v == 0 {
		if objects > 0 {
			return 0, db.errf("%w (has tables but no cachebench marker)", ErrNotCachebench)
		}
		return 0, nil
	}
	var app string
	err := db.db.QueryRow("SELECT value FROM meta WHERE key = 'application'").Scan(&app)
	if err != nil || app != Application {
		return 0, db.errf("%w (schema version %d but no cachebench marker)", ErrNotCachebench, v)
	}
	if v > newest {
		return 0, db.errf("%w (schema v%d, this build supports up to v%d)", ErrNewerSchema, v, newest)
	}
	return v, nil
}

// migrate runs migration `to` (from version to-1) in one IMMEDIATE transaction; a no-op if another process already did.
func (db *DB) migrate(to int, script string) (err error) {
	tx, err := db.db.Begin()
	if err != nil {
		return db.errf("migrate to schema v%d: %w", to, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var cur int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&cur); err != nil {
		return db.errf("migrate to schema v%d: %w", to, err)
	}
	if cur >= to {
		return tx.Rollback()
	}
	if cur != to-1 {
		return db.errf("migrate to schema v%d: file is at schema v%d", to, cur)
	}
	if _, err := tx.Exec(script); err != nil {
		return db.errf("migrate to schema v%d: %w", to, err)
	}
	if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", to)); err != nil {
		return db.errf("migrate to schema v%d: %w", to, err)
	}
	if err := tx.Commit(); err != nil {
		return db.errf("migrate to schema v%d: %w", to, err)
	}
	return nil
}

// readErr turns a failure of the first queries into a clear error (SQLITE_NOTADB means not a database).
func (db *DB) readErr(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrNotADB {
		return db.errf("%w", ErrNotSQLite)
	}
	return db.errf("open: %w", err)
}

// checkHeader rejects a non-empty file that does not start with the SQLite header, before SQLite touches it.
func checkHeader(path string, mustExist bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if mustExist {
			return pathErrf(path, "no such file")
		}
		return nil
	}
	if err != nil {
		return pathErrf(path, "%w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pathErrf(path, "%w", err)
	}
	if st.IsDir() {
		return pathErrf(path, "is a directory")
	}
	if st.Size() == 0 {
		return nil
	}
	head := make([]byte, len(sqliteMagic))
	if _, err := io.ReadFull(f, head); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return pathErrf(path, "%w", err)
	}
	if !bytes.Equal(head, sqliteMagic) {
		return pathErrf(path, "%w", ErrNotSQLite)
	}
	return nil
}

// uriEscape percent-encodes the characters that end or escape the path part of an SQLite file: URI.
func uriEscape(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '?', '#':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
