// Package sqlite is the embedded Store backend: one SQLite file in WAL mode,
// the default when Mayfly runs as a single server.
//
// SQLite allows one writer at a time, so the Store keeps two pools on the
// same file: a single write connection whose transactions begin IMMEDIATE
// (they take the write lock up front instead of failing with SQLITE_BUSY
// when a read turns into a write), and a pool of read-only connections that
// WAL lets run alongside the writer, so API reads never queue behind leases
// and log appends. synchronous=FULL makes every committed write durable
// before the call returns, which is what an enqueue promises its client.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mayfly-run/mayfly/internal/store"
)

// busyTimeout is how long a connection waits for a lock held by another
// process (or a checkpoint) before giving up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.Store on one SQLite file.
type Store struct {
	w  *sql.DB // one connection: every write goes through it
	r  *sql.DB // read-only connections
	wc *stmtCache
	rc *stmtCache
	g  *groupWriter // runs every write transaction
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and brings its
// schema up to date. path must be a file: the write and read pools are two
// handles on it, which an in-memory database cannot be.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite store %q: want a plain file path", path)
	}

	w, err := openPool(path, true)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	// Keep the one connection open for good: reopening it would redo the
	// pragmas and drop SQLite's page cache.
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}

	r, err := openPool(path, false)
	if err != nil {
		w.Close()
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	st := &Store{w: w, r: r, wc: newStmtCache(w), rc: newStmtCache(r)}
	st.g = newGroupWriter(st)
	return st, nil
}

// openPool opens a pool whose every connection gets the pragmas it needs.
// The pragmas travel in the DSN because database/sql may open new
// connections at any time and each must be set up the same way.
func openPool(path string, write bool) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if write {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return db, nil
}

// Close closes both pools. Every committed write is already on disk.
func (s *Store) Close() error {
	s.g.close()
	return errors.Join(s.rc.close(), s.wc.close(), s.r.Close(), s.w.Close())
}

// mapErr turns driver errors into the store's sentinels; it is the only
// place that knows how SQLite reports them.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_FULL has no extended codes; SQLite reports ENOSPC on a
		// write with it, and the transaction is rolled back whole.
		if se.Code()&0xff == sqlite3.SQLITE_FULL {
			return fmt.Errorf("%w: %s", store.ErrNoSpace, se.Error())
		}
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %s", store.ErrConflict, se.Error())
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			// A row that points at a project or task that does not exist.
			return fmt.Errorf("%w: %s", store.ErrNotFound, se.Error())
		}
	}
	return err
}

// fail wraps err, mapped to a sentinel where one applies, with what failed.
func fail(err error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, mapErr(err))...)
}

// write runs single statements on the write connection (autocommit).
func (s *Store) write() *querier { return &querier{cache: s.wc} }

// read runs statements on the read pool.
func (s *Store) read() *querier { return &querier{cache: s.rc} }

// withTx runs fn in a write transaction (BEGIN IMMEDIATE), possibly shared
// with other writers' work (see group.go), and returns once it committed.
func (s *Store) withTx(ctx context.Context, fn func(tx *querier) error) error {
	return s.g.do(ctx, fn)
}

// withReadTx runs fn in a read transaction, so that several queries see
// one snapshot.
func (s *Store) withReadTx(ctx context.Context, fn func(tx *querier) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	q := &querier{cache: s.rc, tx: tx}
	defer func() { s.rc.warm(ctx, q.miss) }()
	defer tx.Rollback()
	return fn(q)
}

// Times are stored as unix microseconds UTC; these convert at the edge.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func ptrTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// pageBounds turns a store.Page into LIMIT and OFFSET.
func pageBounds(p store.Page) (limit, offset int) {
	limit = p.PerPage
	if limit <= 0 {
		limit = 30
	}
	page := max(p.Page, 0)
	return limit, page * limit
}

// placeholders returns "?, ?, ?" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
