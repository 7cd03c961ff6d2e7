package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/testenv"
)

// killSessions ends every other session on the store's database, as a
// restarted or failed-over PostgreSQL server, or a proxy that dropped the
// connections, would.
func killSessions(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type heard struct{ topic, payload string }

func listen(t *testing.T, s *urlStore, topics ...string) <-chan heard {
	t.Helper()
	ch := make(chan heard, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Listen(ctx, topics, func(topic, payload string) { ch <- heard{topic, payload} }, testenv.Logger(t))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func expect(t *testing.T, ch <-chan heard, want heard) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		select {
		case h := <-ch:
			if h == want {
				return time.Since(t0)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("did not hear %+v within 15 s", want)
		}
	}
}

// One server's Notify reaches a listener on another server's store, on
// its topic only; after the listener's session is killed it reconnects by
// itself, says so with an empty message per topic (it may have missed
// some) and hears the next one.
func TestNotifyReachesOtherServer(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	a, b := openURL(t, url), openURL(t, url)
	heardB := listen(t, b, "tasks", "schedules")
	// LISTEN takes effect when its statement ends: retry until heard.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := a.Notify(t.Context(), "tasks", "from-a"); err != nil {
			t.Fatal(err)
		}
		select {
		case h := <-heardB:
			if h != (heard{"tasks", "from-a"}) {
				t.Fatalf("heard %+v", h)
			}
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the listener never heard a notification")
			}
			continue
		}
		break
	}
	if err := a.Notify(t.Context(), "other", "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Notify(t.Context(), "schedules", "s1"); err != nil {
		t.Fatal(err)
	}
	if h := <-heardB; h != (heard{"schedules", "s1"}) {
		t.Fatalf("heard %+v; want only the topics listened to", h)
	}
	t0 := time.Now()
	if err := a.Notify(t.Context(), "tasks", "timed"); err != nil {
		t.Fatal(err)
	}
	expect(t, heardB, heard{"tasks", "timed"})
	t.Logf("a notification crossed between two stores in %v", time.Since(t0))

	if n := killSessions(t, url); n == 0 {
		t.Fatal("no sessions to kill")
	}
	expect(t, heardB, heard{"tasks", ""})
	expect(t, heardB, heard{"schedules", ""})
	// The sender's pool lost its sessions too and must reconnect.
	for err := a.Notify(t.Context(), "tasks", "after"); err != nil; err = a.Notify(t.Context(), "tasks", "after") {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("notify after the sessions were killed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expect(t, heardB, heard{"tasks", "after"})
}

// Two servers try for the leader lock: one gets it. When its session dies
// (its host gone, PostgreSQL restarted) it is told, and the other takes
// the lock; released, it can be taken again.
func TestLockHasOneHolder(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	a, b := openURL(t, url), openURL(t, url)
	la, err := a.TryLock(t.Context(), "leader")
	if err != nil || la == nil {
		t.Fatalf("first TryLock: %v, %v", la, err)
	}
	if lb, err := b.TryLock(t.Context(), "leader"); err != nil || lb != nil {
		t.Fatalf("second TryLock while held: %v, %v; want nil, nil", lb, err)
	}
	if lo, err := b.TryLock(t.Context(), "another"); err != nil || lo == nil {
		t.Fatalf("a lock of another name: %v, %v", lo, err)
	} else {
		lo.Release()
	}

	killSessions(t, url)
	select {
	case <-la.Lost():
	case <-time.After(15 * time.Second):
		t.Fatal("the holder was not told its session died")
	}
	la.Release()
	var lb interface{ Release() }
	for deadline := time.Now().Add(15 * time.Second); ; {
		l, err := b.TryLock(t.Context(), "leader")
		if err == nil && l != nil {
			lb = l
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lock was not free after its holder's session died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	lb.Release()
	la2, err := a.TryLock(t.Context(), "leader")
	if err != nil || la2 == nil {
		t.Fatalf("TryLock after release: %v, %v", la2, err)
	}
	la2.Release()
}
