package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Servers sharing the database tell each other about new work with
// LISTEN/NOTIFY: one NOTIFY reaches every session listening on the
// channel, on any server, as soon as the sender's transaction commits.
// Notifications are not stored: a listener that is disconnected misses
// them, which is why it reports a reconnection as a wake-up of every topic
// and why the servers still poll, slowly, as a fallback.

// channelPrefix keeps Mayfly's channels apart from anything else that uses
// LISTEN on the same database.
const channelPrefix = "mayfly_"

// Notify sends payload on topic to every process listening on this
// database, this one included.
func (s *Store) Notify(ctx context.Context, topic, payload string) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channelPrefix+topic, payload); err != nil {
		return fmt.Errorf("notify %s: %w", topic, mapErr(err))
	}
	return nil
}

// Listen calls fn for every notification on topics until ctx ends, on a
// connection of its own. When that connection breaks it reconnects, with
// a growing pause, and then calls fn once per topic with an empty payload:
// something may have been sent while it was away. It returns ctx's error.
var (
	_ store.Notifier = (*Store)(nil)
	_ store.Locker   = (*Store)(nil)
)

func (s *Store) Listen(ctx context.Context, topics []string, fn func(topic, payload string), log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	pause := 100 * time.Millisecond
	for first := true; ; first = false {
		conn, err := s.listenConn(ctx, topics)
		if err == nil {
			if !first {
				log.Info("listening for other servers' wake-ups again")
				for _, t := range topics {
					fn(t, "")
				}
			}
			pause = 100 * time.Millisecond
			err = waitNotifications(ctx, conn, fn)
			closeConn(conn)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("lost the connection that hears other servers' wake-ups; polling until it is back", "err", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

func (s *Store) listenConn(ctx context.Context, topics []string) (*pgx.Conn, error) {
	conn, err := s.dedicatedConn(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range topics {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channelPrefix + t}.Sanitize()); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("listen on %s: %w", t, err)
		}
	}
	return conn, nil
}

func waitNotifications(ctx context.Context, conn *pgx.Conn, fn func(topic, payload string)) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notifications: %w", err)
		}
		if len(n.Channel) > len(channelPrefix) {
			fn(n.Channel[len(channelPrefix):], n.Payload)
		}
	}
}

// dedicatedConn opens a connection outside the pool, with the pool's
// settings, for a session that lives as long as the process: a listener or
// a leader's lock. Held in the pool, it would take a slot from the queries.
func (s *Store) dedicatedConn(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

// Leadership is an advisory lock held by one session: PostgreSQL releases it
// the moment that session ends, so a leader that dies (its process, its
// host or its connection) frees the place for another within the time the
// server takes to see the connection gone. A leader that merely loses its
// connection learns it from the next check and steps down; what it was
// doing must therefore be safe for a moment with two leaders (the
// scheduler's claims and the lease rescue are conditional writes).

// lockCheckEvery is how often a leader checks that its session, and so its
// lock, still holds.
const lockCheckEvery = time.Second

// lock is a held advisory lock.
type lock struct {
	conn *pgx.Conn
	key  int64
	lost chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// TryLock takes the advisory lock named name if no session holds it; it
// returns nil and no error when another does.
func (s *Store) TryLock(ctx context.Context, name string) (store.Lock, error) {
	conn, err := s.dedicatedConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	key := lockKey(name)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if !got {
		closeConn(conn)
		return nil, nil
	}
	l := &lock{conn: conn, key: key, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l, nil
}

// Lost is closed when the lock may no longer be held.
func (l *lock) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up (if still held) and closes its session.
func (l *lock) Release() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// watch owns the session: it checks it every lockCheckEvery and, when
// asked to stop, unlocks and closes it.
func (l *lock) watch() {
	defer close(l.done)
	t := time.NewTicker(lockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			// Closing alone would free the lock too; unlocking first frees
			// it even if the close is slow.
			l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
			cancel()
			closeConn(l.conn)
			l.markLost()
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*lockCheckEvery)
			err := l.conn.Ping(ctx)
			cancel()
			if err != nil {
				l.markLost()
				closeConn(l.conn)
				<-l.stop
				return
			}
		}
	}
}

func (l *lock) markLost() {
	select {
	case <-l.lost:
	default:
		close(l.lost)
	}
}

// lockKey maps a lock's name to PostgreSQL's 64-bit advisory lock space,
// away from the migration lock.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mayfly lock " + name))
	k := int64(h.Sum64())
	if k == migrationLock {
		k++
	}
	return k
}
