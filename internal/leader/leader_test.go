package leader

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// fakeLocker is one lock shared by the "servers" of a test; fail makes
// TryLock fail, as a store that cannot be reached does.
type fakeLocker struct {
	mu     sync.Mutex
	holder *fakeLock
	fail   bool
}

type fakeLock struct {
	l    *fakeLocker
	lost chan struct{}
	once sync.Once
}

func (f *fakeLocker) TryLock(context.Context, string) (store.Lock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("store down")
	}
	if f.holder != nil {
		return nil, nil
	}
	f.holder = &fakeLock{l: f, lost: make(chan struct{})}
	return f.holder, nil
}

func (f *fakeLocker) current() *fakeLock {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder
}

func (k *fakeLock) Lost() <-chan struct{} { return k.lost }

// die is the holder's session ending: the lock is free for others at
// once, and the holder is told.
func (k *fakeLock) die() {
	k.l.mu.Lock()
	if k.l.holder == k {
		k.l.holder = nil
	}
	k.l.mu.Unlock()
	k.once.Do(func() { close(k.lost) })
}

func (k *fakeLock) Release() { k.die() }

// Three servers share one lock: the work runs on one of them; when the
// leader's session dies its work is stopped and another server's starts
// within a retry or two (for a moment both may run, as with a real store:
// the lock is free before the old leader hears it is lost); a stopped
// server gives the lock up for the others.
func TestOneLeaderAtATime(t *testing.T) {
	f := &fakeLocker{}
	var running, starts atomic.Int32
	work := func(ctx context.Context) {
		starts.Add(1)
		running.Add(1)
		<-ctx.Done()
		running.Add(-1)
	}
	stops := make([]context.CancelFunc, 3)
	dones := make([]chan struct{}, 3)
	leading := make([]atomic.Bool, 3)
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		stops[i], dones[i] = cancel, make(chan struct{})
		go func() {
			defer close(dones[i])
			Run(ctx, f, "leader", Config{Retry: 10 * time.Millisecond, Log: testenv.Logger(t), OnChange: leading[i].Store}, work)
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s within 10 s", what)
			}
		}
	}
	leaders := func() int {
		n := 0
		for i := range leading {
			if leading[i].Load() {
				n++
			}
		}
		return n
	}
	waitFor("no leader", func() bool { return running.Load() == 1 && leaders() == 1 })
	for range 5 {
		before := starts.Load()
		f.current().die()
		waitFor("no single new leader after the old one's session died", func() bool {
			return starts.Load() > before && running.Load() == 1 && leaders() == 1
		})
	}
	// A store that cannot be reached: nobody leads, and the followers keep
	// trying until it is back.
	f.mu.Lock()
	f.fail = true
	f.mu.Unlock()
	f.current().die()
	waitFor("work still running with the store down", func() bool { return running.Load() == 0 })
	time.Sleep(50 * time.Millisecond)
	if running.Load() != 0 {
		t.Fatal("work started while no lock could be taken")
	}
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	waitFor("no leader after the store came back", func() bool { return running.Load() == 1 })
	for i := range 3 {
		stops[i]()
		<-dones[i]
	}
	if running.Load() != 0 || leaders() != 0 || f.current() != nil {
		t.Fatalf("after stopping: %d running, %d leading, lock held %v", running.Load(), leaders(), f.current() != nil)
	}
}

// Without a lock to share (one server), the work runs at once, until the
// context ends.
func TestNoLockerRunsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, nil, "leader", Config{}, func(ctx context.Context) { close(ran); <-ctx.Done() })
	}()
	<-ran
	cancel()
	<-done
}
