package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/mayfly-run/mayfly/internal/store/batch"
)

// Group commit. SQLite has one writer and every commit waits for the disk
// (synchronous=FULL), so a commit per write caps the queue at the disk's
// flush rate however many runners there are. Instead one goroutine owns
// the write connection: each write transaction is a request; the writer
// takes all requests waiting (up to maxGroup), runs them in one
// transaction, each inside a savepoint of its own, commits once, and only
// then answers each. A request whose work fails is rolled back to its
// savepoint and answered with its error, without touching the others; if
// the commit itself fails, every request of the group gets that error and
// none of them is applied. So the promise is unchanged: a write that
// returned nil is on disk, one that returned an error is not. Under load
// the groups grow by themselves (requests pile up while the disk flushes);
// alone, a request is a transaction of its own, with no waiting for others.

// maxGroup bounds one group, so one commit's answers are not held back by
// an unbounded queue of work.
const maxGroup = 128

type txRequest struct {
	ctx  context.Context
	fn   func(tx *querier) error
	done chan error
}

type groupWriter struct {
	s *Store
	q *batch.Queue[*txRequest]
}

var errStoreClosed = errors.New("sqlite store is closed")

func newGroupWriter(s *Store) *groupWriter {
	g := &groupWriter{s: s}
	// One writer: SQLite has one write connection.
	g.q = batch.New(1, func(pending []*txRequest) (group, rest []*txRequest) {
		n := min(len(pending), maxGroup)
		return pending[:n:n], pending[n:]
	}, g.commit)
	return g
}

// do runs fn in a write transaction shared with whatever else is waiting,
// and returns once that transaction has committed (nil) or not (an error).
func (g *groupWriter) do(ctx context.Context, fn func(tx *querier) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	if !g.q.Add(r) {
		return errStoreClosed
	}
	// Not abandoned on ctx: the request may be in a group being committed,
	// and its caller must learn whether it was applied.
	return <-r.done
}

// close stops the writer once the requests already waiting are written
// and answered.
func (g *groupWriter) close() { g.q.Close() }

func (g *groupWriter) commit(group []*txRequest) {
	ctx := context.Background()
	errs := make([]error, len(group))
	answer := func(commitErr error) {
		for i, r := range group {
			if errs[i] == nil {
				errs[i] = commitErr
			}
			r.done <- errs[i]
		}
	}
	tx, err := g.s.w.BeginTx(ctx, nil)
	if err != nil {
		answer(fmt.Errorf("begin: %w", err))
		return
	}
	q := &querier{cache: g.s.wc, tx: tx, detach: true}
	defer func() { g.s.wc.warm(ctx, q.miss) }()
	// One request alone needs no savepoint: its failure rolls back the
	// whole transaction, which is its own.
	alone := len(group) == 1
	applied := 0
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if alone {
			errs[i] = r.fn(q)
			break
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			tx.Rollback()
			answer(fmt.Errorf("savepoint: %w", err))
			return
		}
		if errs[i] = r.fn(q); errs[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				tx.Rollback()
				answer(fmt.Errorf("roll back to savepoint after %v: %w", errs[i], err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
			tx.Rollback()
			answer(fmt.Errorf("release savepoint: %w", err))
			return
		}
		if errs[i] == nil {
			applied++
		}
	}
	if alone && errs[0] != nil || !alone && applied == 0 {
		tx.Rollback()
		answer(nil)
		return
	}
	if err := tx.Commit(); err != nil {
		// Every request that had succeeded learns the commit failed.
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	answer(nil)
}
