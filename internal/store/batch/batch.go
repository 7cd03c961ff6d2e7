// Package batch is the queue under the stores' group commit: callers add
// requests, writer goroutines take them in groups and write each group
// with one commit. What a group may hold and how it is written belong to
// each store; the waiting, waking, holding and stopping are here, once.
package batch

import (
	"sync"
	"time"
)

// Queue holds requests of type R until a writer takes them.
type Queue[R any] struct {
	mu      sync.Mutex
	pending []R
	closed  bool
	kick    chan struct{} // buffered: one per writer
	stop    chan struct{}
	wg      sync.WaitGroup
	timer   *time.Timer // wakes a writer when the held requests are due
	due     time.Time   // when timer fires; zero when it is not set

	take  func(pending []R) (group, rest []R)
	write func(group []R)
	hold  Hold[R]
}

// Hold lets requests that need no quick answer wait for company, so that
// one statement and one commit carry many of them instead of a few: a
// request for which Held is true is taken only once Count of them wait,
// the oldest has waited For, a request for which Flush is true waits, or
// the queue is closing. The others never wait for them.
type Hold[R any] struct {
	Held  func(r R) (held bool, since time.Time)
	Flush func(r R) bool
	Count int
	For   time.Duration
}

// New starts writers goroutines. take splits what is waiting into the next
// group and the rest (in arrival order); write writes a group and answers
// each of its requests.
func New[R any](writers int, take func(pending []R) (group, rest []R), write func(group []R)) *Queue[R] {
	return NewHolding(writers, take, write, Hold[R]{})
}

// NewHolding is New with some requests held as h says.
func NewHolding[R any](writers int, take func(pending []R) (group, rest []R), write func(group []R), h Hold[R]) *Queue[R] {
	q := &Queue[R]{kick: make(chan struct{}, writers), stop: make(chan struct{}), take: take, write: write, hold: h}
	q.timer = time.AfterFunc(time.Hour, func() {
		q.mu.Lock()
		q.due = time.Time{}
		q.mu.Unlock()
		q.wake()
	})
	q.timer.Stop()
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

// next takes the next group; with q.mu held.
func (q *Queue[R]) next() []R {
	if len(q.pending) == 0 {
		return nil
	}
	visible, held := q.pending, []R(nil)
	if q.hold.Held != nil {
		visible, held = q.holdBack()
	}
	group, rest := q.take(visible)
	q.pending = append(rest, held...)
	if len(rest) > 0 && len(group) > 0 {
		// Another writer may take the rest meanwhile.
		q.wake()
	}
	return group
}

// holdBack splits what waits into what may be taken now and the held
// requests that must wait on, and sets the timer for when they are due.
func (q *Queue[R]) holdBack() (visible, held []R) {
	var oldest time.Time
	count, flush := 0, q.closed
	for _, r := range q.pending {
		if is, since := q.hold.Held(r); is {
			count++
			if oldest.IsZero() || since.Before(oldest) {
				oldest = since
			}
		} else if q.hold.Flush != nil && q.hold.Flush(r) {
			flush = true
		}
	}
	due := oldest.Add(q.hold.For)
	if count == 0 || flush || count >= q.hold.Count || !time.Now().Before(due) {
		return q.pending, nil
	}
	visible = make([]R, 0, len(q.pending)-count)
	held = make([]R, 0, count)
	for _, r := range q.pending {
		if is, _ := q.hold.Held(r); is {
			held = append(held, r)
		} else {
			visible = append(visible, r)
		}
	}
	if q.due.IsZero() || due.Before(q.due) {
		q.due = due
		q.timer.Reset(time.Until(due))
	}
	return visible, held
}

func (q *Queue[R]) run() {
	for {
		select {
		case <-q.kick:
		case <-q.stop:
			// What was taken before Close is written: held requests
			// among it were acknowledged to nobody yet, and refusing
			// them would turn a wait of a few milliseconds into a
			// retry against a server that is going away.
			q.drain()
			return
		}
		q.drain()
	}
}

func (q *Queue[R]) drain() {
	for {
		q.mu.Lock()
		group := q.next()
		q.mu.Unlock()
		if len(group) == 0 {
			return
		}
		q.write(group)
	}
}

// Close takes no more requests, writes what waits (held requests too),
// and returns once every writer has stopped.
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
	q.timer.Stop()
}

// Waiting is how many requests wait to be taken, held ones included.
func (q *Queue[R]) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
