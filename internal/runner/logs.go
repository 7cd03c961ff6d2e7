package runner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// Log shipping: output is batched so a chatty task costs a request per
// flush interval, not per line, yet a follower sees it within that interval.
const (
	logFlushInterval = 300 * time.Millisecond
	logFlushBytes    = 64 << 10
)

// logShipper is the io.Writer a container's output goes to. It sends the
// log to the queue in chunks and cuts it at max bytes with a marker; the
// task itself is not disturbed by the cut.
type logShipper struct {
	ctx    context.Context // ends the retries (not a first try) at a hard stop
	queue  Queue
	taskID string
	lease  wire.LeaseRef
	max    int64
	log    *slog.Logger
	retry  time.Duration
	lost   func(error) bool

	mu      sync.Mutex
	buf     bytes.Buffer
	written int64 // accepted into the log, marker excluded
	cut     bool
	closed  bool
	kick    chan struct{}
	done    chan struct{}
	sendMu  sync.Mutex // keeps chunks in order
}

func newLogShipper(ctx context.Context, q Queue, lease wire.LeaseRef, max int64, retry time.Duration,
	lost func(error) bool, log *slog.Logger) *logShipper {
	if max <= 0 {
		max = 10 << 20
	}
	l := &logShipper{ctx: ctx, queue: q, taskID: lease.TaskID, lease: lease, max: max, log: log, retry: retry, lost: lost,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *logShipper) Write(p []byte) (int, error) {
	l.mu.Lock()
	n := len(p)
	if !l.cut && !l.closed {
		room := l.max - l.written
		if int64(len(p)) > room {
			p = p[:room]
			l.cut = true
		}
		l.buf.Write(p)
		l.written += int64(len(p))
		if l.cut {
			fmt.Fprintf(&l.buf, "\n[mayfly: log truncated at %d bytes; the task's further output was discarded]\n", l.max)
		}
	}
	full := l.buf.Len() >= logFlushBytes
	l.mu.Unlock()
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	// Report the whole write as taken so the container's stream is never
	// blocked or broken by the cut.
	return n, nil
}

func (l *logShipper) loop() {
	t := time.NewTicker(logFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.kick:
		}
		l.flush()
	}
}

func (l *logShipper) flush() {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.mu.Lock()
	if l.buf.Len() == 0 {
		l.mu.Unlock()
		return
	}
	chunk := bytes.Clone(l.buf.Bytes())
	l.buf.Reset()
	l.mu.Unlock()
	// A chunk is retried, in order, while the server cannot be reached
	// (restart, dropped connection): the task's further output waits in
	// the buffer meanwhile, bounded by max, and the task runs on
	// undisturbed. It is dropped only when the lease is gone or after
	// retry.
	deadline := time.Now().Add(l.retry)
	wait := time.Duration(0)
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := l.queue.AppendLog(ctx, l.lease, chunk)
		cancel()
		if err == nil {
			return
		}
		if l.lost(err) || time.Now().After(deadline) || l.ctx.Err() != nil {
			l.log.Warn("dropped a log chunk", "task_id", l.taskID, "bytes", len(chunk), "err", err)
			return
		}
		wait = backoff(wait)
		if try == 1 {
			l.log.Warn("could not ship a log chunk; retrying", "task_id", l.taskID, "err", err)
		}
		select {
		case <-l.ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Close sends what is left and stops shipping. Safe to call twice.
func (l *logShipper) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.flush()
}

// tailBuffer keeps the last max bytes written to it (stderr's tail for the
// task's msg).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
