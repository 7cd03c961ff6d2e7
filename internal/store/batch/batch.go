// Package batch is the queue under the stores' group commit: callers add
// requests, writer goroutines take them in groups and write each group
// with one commit. What a group may hold and how it is written belong to
// each store; the waiting, waking and stopping are here, once.
package batch

import "sync"

// Queue holds requests of type R until a writer takes them.
type Queue[R any] struct {
	mu      sync.Mutex
	pending []R
	closed  bool
	kick    chan struct{} // buffered: one per writer
	stop    chan struct{}
	wg      sync.WaitGroup

	take   func(pending []R) (group, rest []R)
	write  func(group []R)
	refuse func(r R)
}

// New starts writers goroutines. take splits what is waiting into the next
// group and the rest (in arrival order); write writes a group and answers
// each of its requests; refuse answers a request the queue will not write
// because it is closing.
func New[R any](writers int, take func(pending []R) (group, rest []R), write func(group []R), refuse func(r R)) *Queue[R] {
	q := &Queue[R]{kick: make(chan struct{}, writers), stop: make(chan struct{}), take: take, write: write, refuse: refuse}
	for range writers {
		q.wg.Go(q.run)
	}
	return q
}

// Add queues r and wakes a writer; false means the queue is closed and r
// will never be written.
func (q *Queue[R]) Add(r R) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, r)
	q.mu.Unlock()
	q.wake()
	return true
}

func (q *Queue[R]) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *Queue[R]) next() []R {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return nil
	}
	group, rest := q.take(q.pending)
	q.pending = rest
	if len(rest) > 0 {
		// Another writer may take the rest meanwhile.
		q.wake()
	}
	return group
}

func (q *Queue[R]) run() {
	for {
		select {
		case <-q.kick:
		case <-q.stop:
			for group := q.next(); len(group) > 0; group = q.next() {
				for _, r := range group {
					q.refuse(r)
				}
			}
			return
		}
		for group := q.next(); len(group) > 0; group = q.next() {
			q.write(group)
		}
	}
}

// Close takes no more requests, lets the groups in flight finish, refuses
// what still waits, and returns once every writer has stopped.
func (q *Queue[R]) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	q.wg.Wait()
}

// Waiting is how many requests wait to be taken.
func (q *Queue[R]) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
