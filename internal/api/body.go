package api

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// A request body a handler decodes is held in memory until the handler is
// done with it: a 60 MB batch of tasks costs well over 100 MB while it is
// decoded and stored. The body budget bounds what all such bodies together
// may take, so that many large posts at once wait or are turned away with
// 503 and Retry-After instead of exhausting the server.

// freeBodyBytes is what a body may take without counting against the
// budget: heartbeats, leases and ordinary posts never queue behind large
// ones.
const freeBodyBytes = 64 << 10

// bodyWait is how long a large body with a known length waits for budget
// before the request is turned away.
const bodyWait = 5 * time.Second

// errBusy answers a request whose body does not fit the budget now.
var errBusy = &httpError{status: http.StatusServiceUnavailable, retryAfter: 2,
	msg: "The server is busy with other large requests; try again shortly"}

// bodyBudget is the server-wide budget for request bodies being decoded.
type bodyBudget struct {
	sem  *semaphore.Weighted
	size int64
}

func newBodyBudget(size int64) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(size), size: size}
}

// admit returns r's body bounded by limit and charged against the budget,
// and the function that gives the charge back once the handler no longer
// holds what it decoded. A body with a known length is charged whole
// before a byte is read, waiting up to bodyWait; a body of unknown length
// is charged as it is read and fails with errBusy when the budget runs out.
func (a *API) admit(w http.ResponseWriter, r *http.Request, limit int64) (io.Reader, func(), error) {
	if r.ContentLength > limit {
		// Refused before anything is read; the client learns the limit.
		return nil, func() {}, &http.MaxBytesError{Limit: limit}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	b := a.bodies
	if r.ContentLength >= 0 {
		n := min(r.ContentLength, b.size)
		if n <= freeBodyBytes {
			return body, func() {}, nil
		}
		ctx, cancel := context.WithTimeout(r.Context(), bodyWait)
		defer cancel()
		if err := b.sem.Acquire(ctx, n); err != nil {
			if r.Context().Err() != nil {
				return nil, func() {}, r.Context().Err()
			}
			return nil, func() {}, errBusy
		}
		return body, func() { b.sem.Release(n) }, nil
	}
	cr := &chargedReader{r: body, budget: b}
	return cr, cr.release, nil
}

// chargedReader charges what it reads past freeBodyBytes to the budget.
type chargedReader struct {
	r       io.Reader
	budget  *bodyBudget
	read    int64
	mu      sync.Mutex
	charged int64
}

func (c *chargedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	if over := c.read - freeBodyBytes; over > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		need := min(over, c.budget.size) - c.charged
		if need > 0 {
			if !c.budget.sem.TryAcquire(need) {
				return n, errBusy
			}
			c.charged += need
		}
	}
	return n, err
}

func (c *chargedReader) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.charged > 0 {
		c.budget.sem.Release(c.charged)
		c.charged = 0
	}
}
