package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// tokenRates is one token bucket per API token, at the rate its project's
// quota sets. Each server keeps its own: servers behind one balancer
// each allow the rate.
type tokenRates struct {
	mu     sync.Mutex
	m      map[string]*tokenBucket
	pruned time.Time
}

type tokenBucket struct {
	lim  *rate.Limiter
	last time.Time
}

// rateIdle is how long an unused bucket is kept; by then it is full
// again at any rate worth having, the same as a new one.
const rateIdle = 10 * time.Minute

// burstFor is what a token may send at once above its rate: two seconds'
// worth, and at least 5 requests.
func burstFor(perSecond float64) int { return max(5, int(math.Ceil(2*perSecond))) }

// take charges one request to the token, or says how long until there is
// room for one. perSecond <= 0 means no limit.
func (t *tokenRates) take(tokenID string, perSecond float64, now time.Time) (wait time.Duration) {
	if perSecond <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*tokenBucket{}
	}
	if now.Sub(t.pruned) > rateIdle {
		t.pruned = now
		for k, b := range t.m {
			if now.Sub(b.last) > rateIdle {
				delete(t.m, k)
			}
		}
	}
	b := t.m[tokenID]
	if b == nil {
		b = &tokenBucket{lim: rate.NewLimiter(rate.Limit(perSecond), burstFor(perSecond))}
		t.m[tokenID] = b
	} else if float64(b.lim.Limit()) != perSecond {
		// The project's quota changed.
		b.lim.SetLimitAt(now, rate.Limit(perSecond))
		b.lim.SetBurstAt(now, burstFor(perSecond))
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// tooFast is the answer to a token over its rate.
func tooFast(wait time.Duration) error {
	return &httpError{status: http.StatusTooManyRequests,
		msg:        "Too many requests for this token: its project's request_rate quota is reached; retry after the time in Retry-After",
		retryAfter: max(1, int(math.Ceil(wait.Seconds())))}
}
