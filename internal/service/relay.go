package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Wake-ups between servers sharing a store. Each server wakes its own
// waiting runners and scheduler directly; the relay also sends the news to
// the other servers through the store's Notifier, and turns what they send
// into the same local wake-ups. A lost message costs at most one lease
// poll (or the scheduler's next look), never a task.

// Topics of the messages.
const (
	topicTasks     = "tasks"     // something became leasable
	topicSchedules = "schedules" // a schedule's timing changed
)

// relayGap is the least time between two messages on one topic: the first
// of a burst goes at once, the rest of it become one message after the gap,
// so a thousand finishes a second do not become a thousand messages to
// every server.
const relayGap = 20 * time.Millisecond

type relay struct {
	n    store.Notifier
	self string // the payload this process sends, so it ignores its own

	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{} // buffered 1: there is something pending
}

func newRelay(n store.Notifier) *relay {
	b := make([]byte, 8)
	rand.Read(b)
	return &relay{n: n, self: hex.EncodeToString(b), pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// publish asks for a message on topic; it never blocks. Safe on nil.
func (r *relay) publish(topic string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.pending[topic] = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *relay) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	topics := make([]string, 0, len(r.pending))
	for t := range r.pending {
		topics = append(topics, t)
	}
	clear(r.pending)
	return topics
}

// RunRelay carries wake-ups to and from the other servers sharing the
// store until ctx ends. It returns at once when the store is not shared.
func (s *Service) RunRelay(ctx context.Context) {
	r := s.relay
	if r == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = r.n.Listen(ctx, []string{topicTasks, topicSchedules}, func(topic, from string) {
			if from == r.self {
				return
			}
			switch topic {
			case topicTasks:
				s.wakeRunners()
			case topicSchedules:
				s.sched.notify()
			}
		}, s.log)
	})
	defer wg.Wait()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		for _, topic := range r.take() {
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.n.Notify(nctx, topic, r.self)
			cancel()
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Once per outage: the store's own errors say the rest.
				s.log.Warn("could not wake the other servers; they find the work at their next poll", "topic", topic, "err", err)
				failing = true
			case err == nil:
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(relayGap):
		}
	}
}
