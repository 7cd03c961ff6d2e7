package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/batch"
)

// Grouped lease writes. Every task costs a running mark and a finish (and
// a long one heartbeats), each a commit of one row that waits for the WAL
// flush and a round trip. Instead, the marks, finishes and heartbeats that
// wait at the same time become one set-based UPDATE per kind, sent in one
// pipeline that runs as one implicit transaction: one round trip and one
// commit for the lot. Each request is answered only once that commit has
// returned, so a nil answer still means the write is durable.
//
// Lease fencing is per row, as before: each UPDATE joins its rows to the
// tasks on id, runner and attempt and the status the write needs, and
// RETURNING says which rows it changed; a request whose row did not match
// (a stale lease) gets store.ErrLeaseLost and changes nothing. A group
// holds at most one request per task, so the order of its statements never
// matters; a second request for a task waits for the next group, as it
// would have waited for the first's row lock.
//
// A group the server refuses (a deadlock with a rescue running at the same
// time, say) rolled back whole; its requests are then run one by one, so
// each gets the answer it would have had alone.
//
// Reports (running marks, finishes, heartbeats) wait for company: they
// are taken once reportBatch of them wait or the oldest has waited
// reportHold, as River's completer gathers completions. A runner frees a
// task's slot before its report is answered, so the wait costs it no
// slot; what it saves is a statement and a commit per few tasks (at 2,500
// tasks/s, 12 ends a statement instead of 2.6). Leases never wait: a
// lease is what a runner's free slots wait on. A lease that finds nothing
// by the one-statement path flushes the reports first (kindFlush), so the
// paths that count running tasks (max_concurrency, quotas, fair share)
// count those that ended as ended.

const (
	// maxGroup bounds one group, so one commit's answers are not held
	// back by an unbounded queue of work.
	maxGroup = 256
	// groupWriters is how many groups may be in flight at once: one more
	// than one, so a group being committed does not leave the pool idle.
	groupWriters = 2
	// groupTimeout bounds one group's round trip, so a server that stops
	// answering does not hold every caller for ever.
	groupTimeout = time.Minute
	// reportHold and reportBatch bound how long and for how many others
	// a report waits: 5 ms is a few lease round trips, and far below the
	// seconds a lease lasts.
	reportHold  = 5 * time.Millisecond
	reportBatch = 128
)

type writeKind int

const (
	kindStart writeKind = iota
	kindFinish
	kindHeartbeat
	// kindLease is a lease's first try (leaseFastSQL).
	kindLease
	// kindFlush writes nothing: it takes the held reports along, and is
	// answered once they are committed.
	kindFlush
)

type writeRequest struct {
	kind   writeKind
	taskID string
	start  store.StartParams
	finish store.FinishParams
	beat   store.HeartbeatParams
	lease  leaseRequest
	asked  time.Time        // heartbeats: when it was asked for (store.LeaseStart)
	queued time.Time        // when it was queued, for the reports' hold
	done   chan writeResult // buffered 1
}

// leaseRequest is a lease's first try: leaseFastSQL's arguments.
type leaseRequest struct {
	p        store.LeaseParams
	clusters []string
	asked    time.Time // when the lease was asked for (store.LeaseStart)
}

// times are the lease's now and expiry, counted from when it is written.
func (l leaseRequest) times() (now, expires int64) {
	return micros(l.p.Now), micros(store.LeaseStart(l.p.Now, l.asked, l.p.LeaseDuration).Add(l.p.LeaseDuration))
}

type writeResult struct {
	cancel bool         // heartbeats: a cancel was asked
	tasks  []store.Task // leases: the tasks leased
	err    error
}

type groupWriter struct {
	s       *Store
	q       *batch.Queue[*writeRequest]
	written atomic.Int64 // groups written, for tests
}

var errStoreClosed = errors.New("postgres store is closed")

func newGroupWriter(s *Store, hold time.Duration) *groupWriter {
	g := &groupWriter{s: s}
	g.q = batch.NewHolding(groupWriters, takeGroup, g.write, batch.Hold[*writeRequest]{
		Held:  func(r *writeRequest) (bool, time.Time) { return r.isReport(), r.queued },
		Flush: func(r *writeRequest) bool { return r.kind == kindFlush },
		Count: reportBatch, For: hold,
	})
	return g
}

// isReport is whether r may wait for company (see reportHold).
func (r *writeRequest) isReport() bool {
	return r.kind == kindStart || r.kind == kindFinish || r.kind == kindHeartbeat
}

// flush returns once the reports waiting now are committed (or failed:
// their callers hear why).
func (g *groupWriter) flush(ctx context.Context) error {
	if g.q.Waiting() == 0 {
		return nil
	}
	return g.do(ctx, &writeRequest{kind: kindFlush}).err
}

// do queues r and waits for its answer, or for ctx: a request abandoned
// on ctx may still be applied, as a statement cancelled mid-commit may.
func (g *groupWriter) do(ctx context.Context, r *writeRequest) writeResult {
	if err := ctx.Err(); err != nil {
		return writeResult{err: err}
	}
	r.done, r.queued = make(chan writeResult, 1), time.Now()
	if !g.q.Add(r) {
		return writeResult{err: errStoreClosed}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
		return writeResult{err: ctx.Err()}
	}
}

// takeGroup is the next group: up to maxGroup requests in arrival order,
// at most one per task (leases and flushes name no task: any number of
// them).
func takeGroup(pending []*writeRequest) (group, rest []*writeRequest) {
	seen := make(map[string]bool, min(len(pending), maxGroup))
	for _, r := range pending {
		if len(group) == maxGroup || (r.isReport() && seen[r.taskID]) {
			rest = append(rest, r)
			continue
		}
		seen[r.taskID] = true
		group = append(group, r)
	}
	return group, rest
}

// close stops the writers once what waits is written and answered.
func (g *groupWriter) close() { g.q.Close() }

// groupPlanSQL fixes the plans of the group's statements, until the
// commit, in one statement: each row of the updates found by its id in
// the primary key, the plan made once per connection. Left to itself the
// server plans them anew on most calls (a custom plan for each array
// length looks cheaper than a generic one, and weighing the table's
// partial indexes made the planning cost more than the update: a fifth of
// the queue's database time), and its plans scanned the active tasks
// (tasks_active) to join them, which grows with the tasks
// running. The updates test the status as (status || ”), which no
// partial index's predicate matches, so the primary key is the only
// index they can use. The leases run under the same settings, with theirs
// (leasePlanSettings): their generic plan, made once, walks the queue's
// index and finds everything else by primary key (leaseFastSQL).
const groupPlanSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), ` + leasePlanSettings

const groupStartSQL = `UPDATE tasks t SET status = 'running', start_time = u.now, updated_at = u.now
	FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS u(id, runner_id, attempt, now)
	WHERE t.id = u.id AND t.runner_id = u.runner_id AND t.attempt = u.attempt AND (t.status || '') = 'preparing'
	RETURNING t.id, FALSE`

// runner_id stays: it records who ran the task.
const groupFinishSQL = `UPDATE tasks t SET status = u.status, msg = CASE WHEN u.msg = '' THEN t.msg ELSE u.msg END,
		exit_code = u.exit_code, end_time = u.now, updated_at = u.now, lease_expires_at = NULL,
		retry_at = '', timings = u.timings, start_time = COALESCE(t.start_time, u.started)
	FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::text[], $9::bigint[])
		AS u(id, runner_id, attempt, status, msg, exit_code, now, timings, started)
	WHERE t.id = u.id AND t.runner_id = u.runner_id AND t.attempt = u.attempt AND (t.status || '') IN ('preparing', 'running')
	RETURNING t.id, FALSE`

const groupHeartbeatSQL = `UPDATE tasks t SET lease_expires_at = u.expires
	FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS u(id, runner_id, attempt, expires)
	WHERE t.id = u.id AND t.runner_id = u.runner_id AND t.attempt = u.attempt AND (t.status || '') IN ('preparing', 'running')
	RETURNING t.id, t.cancel_request`

// write runs one group in one implicit transaction and answers each of its
// requests once that has committed.
func (g *groupWriter) write(group []*writeRequest) {
	g.written.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	var (
		starts, finishes, beats, leases []*writeRequest
	)
	for _, r := range group {
		switch r.kind {
		case kindStart:
			starts = append(starts, r)
		case kindFinish:
			finishes = append(finishes, r)
		case kindHeartbeat:
			beats = append(beats, r)
		case kindLease:
			leases = append(leases, r)
		}
	}
	if len(starts)+len(finishes)+len(beats)+len(leases) == 0 {
		// Flushes alone: the reports they waited for went before.
		for _, r := range group {
			r.done <- writeResult{}
		}
		return
	}
	b := &pgx.Batch{}
	b.Queue(groupPlanSQL)
	var kinds [][]*writeRequest
	if len(starts) > 0 {
		ids, runners, attempts, nows := make([]string, len(starts)), make([]string, len(starts)), make([]int32, len(starts)), make([]int64, len(starts))
		for i, r := range starts {
			ids[i], runners[i], attempts[i], nows[i] = r.start.TaskID, r.start.RunnerID, int32(r.start.Attempt), micros(r.start.Now)
		}
		b.Queue(groupStartSQL, ids, runners, attempts, nows)
		kinds = append(kinds, starts)
	}
	if len(finishes) > 0 {
		n := len(finishes)
		ids, runners, attempts, statuses, msgs := make([]string, n), make([]string, n), make([]int32, n), make([]string, n), make([]string, n)
		codes, nows, timings, started := make([]*int64, n), make([]int64, n), make([]string, n), make([]*int64, n)
		for i, r := range finishes {
			p := r.finish
			ids[i], runners[i], attempts[i], statuses[i], msgs[i] = p.TaskID, p.RunnerID, int32(p.Attempt), string(p.Status), p.Msg
			codes[i], nows[i], timings[i], started[i] = nullInt(p.ExitCode), micros(p.Now), encodeTimings(p.Timings), nullMicros(p.StartTime())
		}
		b.Queue(groupFinishSQL, ids, runners, attempts, statuses, msgs, codes, nows, timings, started)
		kinds = append(kinds, finishes)
	}
	if len(beats) > 0 {
		n := len(beats)
		ids, runners, attempts, expires := make([]string, n), make([]string, n), make([]int32, n), make([]int64, n)
		for i, r := range beats {
			p := r.beat
			ids[i], runners[i], attempts[i], expires[i] = p.TaskID, p.RunnerID, int32(p.Attempt), micros(store.LeaseStart(p.Now, r.asked, p.LeaseDuration).Add(p.LeaseDuration))
		}
		b.Queue(groupHeartbeatSQL, ids, runners, attempts, expires)
		kinds = append(kinds, beats)
	}
	// Leases come last, after the writes above freed what they free.
	// Each lease sees the rows the ones before it took as no longer
	// queued, so no task goes to two of them.
	if len(leases) > 0 {
		for _, r := range leases {
			l := r.lease
			now, expires := l.times()
			b.Queue(leaseSQL(l.clusters).fast, l.clusters, now, int64(math.MaxInt64), int64(math.MinInt64), "", l.p.Max, l.p.RunnerID, expires, now, l.p.RunningTasks)
		}
	}

	// matched[id] is what the row of each request that applied returned;
	// leased[r] the tasks of each lease.
	matched := make(map[string]bool, len(group))
	leased := make(map[*writeRequest][]store.Task, len(leases))
	err := func() error {
		br := g.s.pool.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		for range kinds {
			rows, err := br.Query()
			if err != nil {
				br.Close()
				return err
			}
			for rows.Next() {
				var id string
				var cancel bool
				if err := rows.Scan(&id, &cancel); err != nil {
					rows.Close()
					br.Close()
					return err
				}
				matched[id] = cancel
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				br.Close()
				return err
			}
		}
		if len(leases) > 0 {
			for _, r := range leases {
				rows, err := br.Query()
				if err != nil {
					br.Close()
					return err
				}
				if leased[r], err = scanTasks(rows); err != nil {
					br.Close()
					return err
				}
			}
		}
		// The implicit transaction commits at the pipeline's end: Close
		// returns once it has, or with why it did not.
		return br.Close()
	}()
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && len(group) > 1 {
			// The server refused the group and rolled it back whole:
			// each request on its own gets the answer it would have had.
			for _, r := range group {
				r.done <- g.s.writeAlone(ctx, r)
			}
			return
		}
		for _, r := range group {
			r.done <- writeResult{err: err}
		}
		return
	}
	for _, r := range group {
		switch r.kind {
		case kindLease:
			r.done <- writeResult{tasks: leased[r]}
			continue
		case kindFlush:
			r.done <- writeResult{}
			continue
		}
		cancel, ok := matched[r.taskID]
		if !ok {
			r.done <- writeResult{err: store.ErrLeaseLost}
			continue
		}
		r.done <- writeResult{cancel: cancel}
	}
}

// writeAlone runs one request as a transaction of its own.
func (s *Store) writeAlone(ctx context.Context, r *writeRequest) writeResult {
	switch r.kind {
	case kindStart:
		return writeResult{err: s.markRunning(ctx, r.start)}
	case kindFinish:
		return writeResult{err: s.finishTask(ctx, r.finish)}
	case kindHeartbeat:
		p := r.beat
		p.Now = store.LeaseStart(p.Now, r.asked, p.LeaseDuration)
		cancel, err := s.heartbeat(ctx, p)
		return writeResult{cancel: cancel, err: err}
	case kindLease:
		l := r.lease
		now, expires := l.times()
		tasks, _, err := s.leaseFast(ctx, l.p, l.clusters, now, expires)
		return writeResult{tasks: tasks, err: err}
	case kindFlush:
		return writeResult{}
	}
	return writeResult{err: fmt.Errorf("unknown write kind %d", r.kind)}
}
