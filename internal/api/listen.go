package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/netcap"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Limits bound what one client, and all clients together, can hold of the
// server: connections, time and requests. Every deadline is a
// minimum-progress rule rather than a cap on the whole request, so a large
// upload on a slow link still gets through while a client that stops
// sending or reading is cut off.
type Limits struct {
	// MaxConns caps open connections in all; MaxConnsPerClient those from
	// one client IP (an IPv6 client is its /64). Connections over a cap
	// are closed at once. 0 means no cap.
	MaxConns          int
	MaxConnsPerClient int
	// ReadHeaderTimeout is the time a client has to send a request's
	// headers once it starts one.
	ReadHeaderTimeout time.Duration
	// BodyTimeout is the longest wait for the next bytes of a request
	// body; MinBodyRate (bytes/s) is the least a body must average once it
	// has taken longer than BodyTimeout.
	BodyTimeout time.Duration
	MinBodyRate int64
	// WriteTimeout is the time a handler has to answer after the request
	// body has arrived, and the longest wait for the client to take the
	// next part of an answer. Routes that wait on purpose (the runner's
	// long-poll lease) extend it for their own request.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration
	// RequestRate is the requests per second one client IP may make that
	// no valid token vouches for, with bursts of RequestBurst; over it the
	// answer is 429 with Retry-After, before any token is looked at.
	// Requests whose token proves valid give their share back, and
	// /healthz and /readyz are not counted. 0 means no limit.
	RequestRate  float64
	RequestBurst int
}

// DefaultLimits are generous enough for any well-behaved client, many of
// them on one address, and the embedded runner and CLI on loopback.
func DefaultLimits() Limits {
	maxConns := DefaultMaxConns()
	return Limits{
		MaxConns: maxConns,
		// A quarter of the whole at most, so that one client never locks
		// the others out, even under a low open-file limit.
		MaxConnsPerClient: min(256, max(maxConns/4, 8)),
		ReadHeaderTimeout: 10 * time.Second,
		BodyTimeout:       30 * time.Second,
		MinBodyRate:       1024,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       30 * time.Second,
		RequestRate:       100,
		RequestBurst:      200,
	}
}

// DefaultMaxConns is half the process's open-file limit, at most 10,000:
// the other half stays for the store, code packages, task sockets and the
// container engine, so an attack on the listener cannot starve them.
func DefaultMaxConns() int {
	n := fileLimit() / 2
	return min(max(n, 64), 10_000)
}

// Validate says which limit makes no sense.
func (l Limits) Validate() error {
	switch {
	case l.MaxConns < 0 || l.MaxConnsPerClient < 0:
		return errors.New("connection caps must be 0 (no cap) or more")
	case l.ReadHeaderTimeout <= 0 || l.BodyTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0:
		return errors.New("read-header, body, write and idle timeouts must be more than 0")
	case l.MinBodyRate < 0:
		return errors.New("--min-body-rate must be 0 (none) or more")
	case l.RequestRate < 0 || (l.RequestRate > 0 && l.RequestBurst < 1):
		return errors.New("--request-rate must be 0 (no limit) or more, with --request-burst at least 1")
	}
	return nil
}

// Listen opens a TCP listener on addr that holds to l's connection caps.
func Listen(addr string, l Limits, log *slog.Logger) (*netcap.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return netcap.Wrap(ln, l.MaxConns, l.MaxConnsPerClient, refusalLogger(log, l)), nil
}

// refusalLogger reports refused connections at most every 10 s, so an
// attack does not flood the log as well.
func refusalLogger(log *slog.Logger, l Limits) func(string, bool) {
	if log == nil {
		log = slog.Default()
	}
	var last atomic.Int64
	var since atomic.Int64
	return func(client string, perClient bool) {
		n := since.Add(1)
		now := time.Now().UnixNano()
		prev := last.Load()
		if now-prev < int64(10*time.Second) || !last.CompareAndSwap(prev, now) {
			return
		}
		since.Add(-n)
		cap, limit := "max-conns", l.MaxConns
		if perClient {
			cap, limit = "max-conns-per-client", l.MaxConnsPerClient
		}
		log.Warn("connections refused over a cap", "cap", cap, "limit", limit, "last_client", client, "refused", n)
	}
}

// NewHTTPServer serves h under l's deadlines and request rate. Serve it
// on a listener from Listen for the connection caps.
func NewHTTPServer(h http.Handler, l Limits, log *slog.Logger) *http.Server {
	g := &guard{next: h, l: l}
	if l.RequestRate > 0 {
		g.rates = newClientRates(l.RequestRate, l.RequestBurst)
	}
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		// Body and write deadlines are set per request by the guard, as
		// bytes move; whole-request timeouts would cut off slow uploads
		// and the long-poll lease.
	}
}

// guard sets each request's deadlines and enforces the per-client rate.
type guard struct {
	next  http.Handler
	l     Limits
	rates *clientRates
}

type reqKey struct{}

// reqState is one request's deadlines and rate reservation, found by
// routes through the request context.
type reqState struct {
	rc       *http.ResponseController
	mu       sync.Mutex
	write    time.Duration
	extended time.Time // when the write deadline was last pushed out
	bucket   *bucket   // the client's, charged for this request
	rates    *clientRates
}

func (s *reqState) pushWrite(now time.Time, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Moving a deadline costs a timer update; a few times per timeout is
	// enough.
	if !force && now.Sub(s.extended) < min(time.Second, s.write/4) {
		return
	}
	s.extended = now
	_ = s.rc.SetWriteDeadline(now.Add(s.write))
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	st := &reqState{rc: http.NewResponseController(w), write: g.l.WriteTimeout}
	st.pushWrite(now, true)
	// Set before anything else answers: a request refused unread still
	// has its body drained by the server, which must not wait forever.
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		_ = st.rc.SetReadDeadline(now.Add(g.l.BodyTimeout))
		r.Body = &bodyReader{ReadCloser: r.Body, st: st, timeout: g.l.BodyTimeout, minRate: g.l.MinBodyRate, start: now, extended: now}
	}
	if g.rates != nil && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
		b, wait := g.rates.take(netcap.ClientKeyOf(r.RemoteAddr), now)
		if b == nil {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeJSONStatus(w, http.StatusTooManyRequests, wire.Error{Msg: fmt.Sprintf(
				"Too many requests from this client: the limit is %g per second; retry after %d s", g.l.RequestRate, secs)})
			return
		}
		st.bucket, st.rates = b, g.rates
	}
	g.next.ServeHTTP(&deadlineWriter{ResponseWriter: w, st: st}, r.WithContext(context.WithValue(r.Context(), reqKey{}, st)))
	// The server still flushes the answer after the handler returns.
	st.pushWrite(time.Now(), true)
}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(reqKey{}).(*reqState)
	return st
}

// allowLonger gives a route that waits on purpose extra time to answer, on
// top of the usual write timeout. Outside NewHTTPServer it does nothing.
func allowLonger(r *http.Request, extra time.Duration) {
	if st := stateOf(r); st != nil {
		st.mu.Lock()
		st.write += extra
		st.mu.Unlock()
		st.pushWrite(time.Now(), true)
	}
}

// vouched gives back the request's share of its client's rate once a valid
// token has vouched for it: the rate is for traffic nobody answers for
// (no token, a wrong one, token guessing), so that it can be strict
// without slowing the CLI, runners or a client polling hard, however many
// share one address.
func vouched(r *http.Request) {
	st := stateOf(r)
	if st == nil || st.bucket == nil {
		return
	}
	st.mu.Lock()
	b := st.bucket
	st.bucket = nil
	st.mu.Unlock()
	if b != nil {
		st.rates.refund(b)
	}
}

// errSlowBody is what reading a request body gives when the client stopped
// sending it, or sends it slower than the minimum rate.
var errSlowBody = errors.New("request body arrives too slowly")

// bodyReader pushes the read and write deadlines out as body bytes arrive.
type bodyReader struct {
	io.ReadCloser
	st       *reqState
	timeout  time.Duration
	minRate  int64
	start    time.Time
	extended time.Time
	total    int64
	done     bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, errSlowBody
	}
	n, err := b.ReadCloser.Read(p)
	now := time.Now()
	b.total += int64(n)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			b.done = true
			return n, fmt.Errorf("%w: nothing for %s", errSlowBody, b.timeout)
		}
		if errors.Is(err, io.EOF) {
			// The body is in: from now on the server's own read watches for
			// the client going away, and must not time out under a handler
			// that takes its time (long-poll).
			_ = b.st.rc.SetReadDeadline(time.Time{})
		}
		return n, err
	}
	if elapsed := now.Sub(b.start); b.minRate > 0 && elapsed > b.timeout && float64(b.total) < float64(b.minRate)*elapsed.Seconds() {
		b.done = true
		return n, fmt.Errorf("%w: %d bytes in %s, less than %d bytes/s", errSlowBody, b.total, elapsed.Round(time.Second), b.minRate)
	}
	if n > 0 && now.Sub(b.extended) >= min(time.Second, b.timeout/4) {
		b.extended = now
		_ = b.st.rc.SetReadDeadline(now.Add(b.timeout))
		b.st.pushWrite(now, true)
	}
	return n, nil
}

// deadlineWriter pushes the write deadline out as the answer is taken.
type deadlineWriter struct {
	http.ResponseWriter
	st *reqState
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.st.pushWrite(time.Now(), false)
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Flush() {
	d.st.pushWrite(time.Now(), false)
	_ = d.st.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// clientRates is one token bucket per client IP. It is home-made rather
// than golang.org/x/time/rate because a request must be able to give its
// share back once a valid token vouches for it.
type clientRates struct {
	rate  float64 // tokens per second
	burst float64
	// idle is how long a bucket takes to fill again; an entry unused that
	// long is the same as a new one and is dropped.
	idle time.Duration

	mu     sync.Mutex
	m      map[string]*bucket
	pruned time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newClientRates(perSecond float64, burst int) *clientRates {
	idle := max(time.Duration(float64(burst)/perSecond*float64(time.Second)), 10*time.Second)
	return &clientRates{rate: perSecond, burst: float64(burst), idle: idle, m: map[string]*bucket{}}
}

// take charges one request to key's bucket, or says how long until there
// is room for one.
func (c *clientRates) take(key string, now time.Time) (*bucket, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.pruned) > c.idle {
		c.pruned = now
		for k, b := range c.m {
			if now.Sub(b.last) > c.idle {
				delete(c.m, k)
			}
		}
	}
	b := c.m[key]
	if b == nil {
		b = &bucket{tokens: c.burst, last: now}
		c.m[key] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(c.burst, b.tokens+dt*c.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return nil, time.Duration((1 - b.tokens) / c.rate * float64(time.Second))
	}
	b.tokens--
	return b, 0
}

func (c *clientRates) refund(b *bucket) {
	c.mu.Lock()
	b.tokens = min(c.burst, b.tokens+1)
	c.mu.Unlock()
}

// keepWriting moves the write deadline of a request whose handler streams
// on purpose with pauses (a followed log), as a write would.
func keepWriting(r *http.Request) {
	if st := stateOf(r); st != nil {
		st.pushWrite(time.Now(), false)
	}
}
