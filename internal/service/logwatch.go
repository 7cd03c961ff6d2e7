package service

import "sync"

// logWatches wake the clients following a task's log (GET .../log?follow=1)
// when its runner appends to it or reports its end through this server. A
// follower also looks again by itself every second, for logs written
// through another server.
type logWatches struct {
	mu sync.Mutex
	m  map[string]*logWatch
}

type logWatch struct {
	ch chan struct{} // closed at the next change, then replaced
	n  int           // followers
}

// WatchLog returns a function that returns a channel closed at the task's
// next log change, and a function to call when done following.
func (s *Service) WatchLog(taskID string) (next func() <-chan struct{}, done func()) {
	w := &s.logs
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]*logWatch{}
	}
	lw := w.m[taskID]
	if lw == nil {
		lw = &logWatch{ch: make(chan struct{})}
		w.m[taskID] = lw
	}
	lw.n++
	w.mu.Unlock()
	next = func() <-chan struct{} {
		w.mu.Lock()
		defer w.mu.Unlock()
		return lw.ch
	}
	done = func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if lw.n--; lw.n == 0 && w.m[taskID] == lw {
			delete(w.m, taskID)
		}
	}
	return next, done
}

// logChanged wakes the task's followers, if it has any.
func (s *Service) logChanged(taskID string) {
	w := &s.logs
	w.mu.Lock()
	defer w.mu.Unlock()
	if lw := w.m[taskID]; lw != nil {
		close(lw.ch)
		lw.ch = make(chan struct{})
	}
}
