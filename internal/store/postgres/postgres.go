// Package postgres is the Store backend for several servers sharing one
// database: a PostgreSQL server reached through a pgx connection pool.
//
// It keeps the semantics of the SQLite store; what differs is how writers
// that run at the same time are kept apart. SQLite has one writer; here
// many transactions run at once, so:
//
//   - leasing locks the queued rows it takes with FOR UPDATE SKIP LOCKED,
//     so two leasers never take the same task and never wait on each other;
//   - max_concurrency is counted under a lock on the code's row, so two
//     leasers never both take the last free slot of a code;
//   - log chunks are numbered from a counter in the task's row, bumped under
//     that row's lock, so concurrent appenders never pick the same seq;
//   - migrations run under an advisory lock, so servers starting together
//     apply each one once.
//
// Times are BIGINT unix microseconds UTC, as in SQLite, so they round-trip
// exactly.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Store is a store.Store on one PostgreSQL database.
type Store struct {
	pool  *pgxpool.Pool
	group *groupWriter // running marks, finishes and heartbeats (group.go)
	// healedAt is when leasing last repaired the fair-share list
	// (lease_fair.go), unix ns.
	healedAt atomic.Int64
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://user:pass@host:port/db
// ?sslmode=...; every libpq connection parameter pgx knows is accepted)
// and brings its schema up to date.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The URL may hold a password: name only what went wrong.
		return nil, fmt.Errorf("open postgres store: parse url: %w", err)
	}
	where := cfg.ConnConfig.Host + "/" + cfg.ConnConfig.Database
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	s := &Store{pool: pool}
	s.group = newGroupWriter(s, reportHold)
	return s, nil
}

// Close answers the grouped writes in flight, then closes the pool. Every
// committed write is already durable.
func (s *Store) Close() error {
	s.group.close()
	s.pool.Close()
	return nil
}

// SQLSTATEs the store maps to its sentinels.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeDiskFull            = "53100"
)

// mapErr turns driver errors into the store's sentinels; it is the only
// place that knows how PostgreSQL reports them.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return fmt.Errorf("%w: %s", store.ErrConflict, pe.Error())
		case codeForeignKeyViolation:
			// A row that points at a project or task that does not exist.
			return fmt.Errorf("%w: %s", store.ErrNotFound, pe.Error())
		case codeDiskFull:
			// The server rolls the transaction back whole.
			return fmt.Errorf("%w: %s", store.ErrNoSpace, pe.Error())
		}
	}
	return err
}

// fail wraps err, mapped to a sentinel where one applies, with what failed.
func fail(err error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, mapErr(err))...)
}

// querier is what the pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type rowScanner interface {
	Scan(dest ...any) error
}

// withTx runs fn in a READ COMMITTED transaction and commits it. Each
// statement sees what other transactions committed before it started,
// which is what the row locks taken in leasing and log appends rely on.
func (s *Store) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// withReadTx runs fn in a read-only REPEATABLE READ transaction, so that
// several queries see one snapshot.
func (s *Store) withReadTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// Times are stored as unix microseconds UTC; these convert at the edge.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMicro()
	return &v
}

func ptrTime(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMicros(*v)
	return &t
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(p *int) *int64 {
	if p == nil {
		return nil
	}
	v := int64(*p)
	return &v
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

// oneRow reports pgx.ErrNoRows when a write matched nothing.
func oneRow(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return pgx.ErrNoRows
	}
	return nil
}

// leaseLost turns "the guarded UPDATE matched no row" into ErrLeaseLost.
func leaseLost(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// params numbers placeholders: p.add(v) returns "$n" for v.
type params struct{ args []any }

func (p *params) add(v any) string {
	p.args = append(p.args, v)
	return fmt.Sprintf("$%d", len(p.args))
}

func (p *params) list(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = p.add(v)
	}
	return strings.Join(out, ", ")
}

// Pool is the store's connection pool, for tests and tools that need to
// look under the Store.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Writable reports an error when the database only reads: a standby
// promoted to nothing yet, after a fail-over that pointed the URL at it.
func (s *Store) Writable(ctx context.Context) error {
	var standby bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if standby {
		return errors.New("postgres is a read-only standby")
	}
	return nil
}
