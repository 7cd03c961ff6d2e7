package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// Parsing SQL is a large part of a short statement's cost in SQLite, and
// leasing runs the same few statements all day, so each pool keeps its
// statements prepared. The write pool has a single connection, so its
// statements are prepared once; transactions reuse them through Tx.Stmt,
// which database/sql serves from the connection's existing preparation.
//
// A statement is never prepared on the pool from inside a transaction:
// the transaction holds the write pool's only connection, so preparing
// would wait for it forever. A transaction runs a statement it misses
// unprepared and the cache prepares it once the transaction has ended.

// maxCached bounds the cache; statements past it (only ListTasks builds
// queries from its filters) are prepared per call.
const maxCached = 256

type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// get returns the prepared statement for query, or nil when it is not
// cached and prepare is false or the cache is full.
func (c *stmtCache) get(ctx context.Context, query string, prepare bool) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCached
	c.mu.Unlock()
	if ok || !prepare || full {
		return st, nil
	}
	// Prepared without holding mu, which a transaction on the connection
	// may need meanwhile, and without the caller's context: the statement
	// outlives the call.
	st, err := c.db.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		st.Close()
		return prev, nil
	}
	c.m[query] = st
	return st, nil
}

// warm prepares the statements a transaction missed. Failures are left for
// the next run of the statement to report.
func (c *stmtCache) warm(ctx context.Context, queries []string) {
	for _, q := range queries {
		c.get(ctx, q, true)
	}
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// querier runs statements through a pool's cache, on the pool itself or,
// when tx is set, inside that transaction.
type querier struct {
	cache *stmtCache
	tx    *sql.Tx
	inTx  map[*sql.Stmt]*sql.Stmt // tx-bound wrappers, made once per transaction
	miss  []string                // statements the transaction ran unprepared
	// detach runs statements without their caller's cancellation: in a
	// transaction shared by several callers (group commit), one caller
	// giving up must not interrupt the statement, which would make
	// SQLite roll back the others' work with it.
	detach bool
}

func (q *querier) ctx(ctx context.Context) context.Context {
	if q.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// stmt returns the statement to run query with, or nil to run it unprepared.
func (q *querier) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, err := q.cache.get(ctx, query, q.tx == nil)
	if err != nil || q.tx == nil {
		return st, err
	}
	if st == nil {
		q.miss = append(q.miss, query)
		return nil, nil
	}
	if ts, ok := q.inTx[st]; ok {
		return ts, nil
	}
	if q.inTx == nil {
		q.inTx = map[*sql.Stmt]*sql.Stmt{}
	}
	ts := q.tx.StmtContext(ctx, st)
	q.inTx[st] = ts
	return ts, nil
}

func (q *querier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = q.ctx(ctx)
	st, err := q.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st != nil:
		return st.ExecContext(ctx, args...)
	case q.tx != nil:
		return q.tx.ExecContext(ctx, query, args...)
	default:
		return q.cache.db.ExecContext(ctx, query, args...)
	}
}

func (q *querier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = q.ctx(ctx)
	st, err := q.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st != nil:
		return st.QueryContext(ctx, args...)
	case q.tx != nil:
		return q.tx.QueryContext(ctx, query, args...)
	default:
		return q.cache.db.QueryContext(ctx, query, args...)
	}
}

func (q *querier) QueryRowContext(ctx context.Context, query string, args ...any) rowScanner {
	ctx = q.ctx(ctx)
	st, err := q.stmt(ctx, query)
	switch {
	case err != nil:
		return errRow{err}
	case st != nil:
		return st.QueryRowContext(ctx, args...)
	case q.tx != nil:
		return q.tx.QueryRowContext(ctx, query, args...)
	default:
		return q.cache.db.QueryRowContext(ctx, query, args...)
	}
}

// errRow is a row whose query could not even be prepared.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
