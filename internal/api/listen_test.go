package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/netcap"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// limited is a real server on loopback built the way `mayfly server`
// builds it, with the given limits, over a fresh store.
type limited struct {
	*bundle
	ln   *netcap.Listener
	addr string
	base string
}

func setupLimited(t *testing.T, l api.Limits) *limited {
	t.Helper()
	b := setup(t, service.Config{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := api.Listen("127.0.0.1:0", l, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewHTTPServer(api.New(b.svc, api.Options{Version: "test", Log: quiet}), l, quiet)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	return &limited{bundle: b, ln: ln, addr: addr, base: "http://" + addr}
}

// url is a project path on the limited server, not the bundle's.
func (s *limited) url(path string) string {
	return s.base + "/2/projects/" + s.project + path
}

// testLimits are the defaults with short timeouts, so a test sees them
// act in seconds.
func testLimits() api.Limits {
	l := api.DefaultLimits()
	l.ReadHeaderTimeout = time.Second
	l.BodyTimeout = time.Second
	l.IdleTimeout = time.Second
	l.WriteTimeout = 2 * time.Second
	return l
}

// dialFrom opens a TCP connection to addr from the loopback address src
// (all of 127.0.0.0/8 is loopback on Linux), so one test can be several
// clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// clientFrom is an HTTP client whose connections come from src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func getStatus(t *testing.T, c *http.Client, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "OAuth "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitOpen waits until the server holds at most want connections, and
// returns how many it holds then (or at the deadline).
func waitOpen(ln *netcap.Listener, want int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := ln.Open()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The attack: 200 requests that promise a megabyte of body and send none
// (with and without a valid token, so both the handler's read and the
// server's drain of an unread body are tried), and 200 keep-alive
// connections left idle. Before limits, all 400 were still held after
// 45 s. Now they go after the body and idle timeouts, and /healthz keeps
// answering meanwhile.
func TestSlowBodyAndIdleConnectionsAreClosed(t *testing.T) {
	l := testLimits()
	l.MaxConnsPerClient = 0 // this attack is about time, not the cap
	s := setupLimited(t, l)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 200 {
		c := dialFrom(t, "127.0.0.1", s.addr)
		conns = append(conns, c)
		auth := ""
		if i%2 == 0 {
			auth = "Authorization: OAuth " + s.token + "\r\n"
		}
		fmt.Fprintf(c, "POST /2/projects/%s/tasks HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"tasks\":", s.project, auth)
	}
	for range 200 {
		c := dialFrom(t, "127.0.0.1", s.addr)
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("keep-alive request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := s.ln.Open(); n < 350 {
		t.Fatalf("the attack holds only %d connections; it did not take", n)
	}
	// While it is on, another client is still served.
	if st := getStatus(t, clientFrom("127.0.0.2"), s.base+"/healthz", ""); st != 200 {
		t.Fatalf("/healthz during the attack: %d", st)
	}
	// Body and idle timeouts are 1 s; give them ample time on a busy
	// machine, far short of forever.
	if n := waitOpen(s.ln, 2, 15*time.Second); n > 2 {
		t.Fatalf("server still holds %d of the attack's 400 connections after 15 s", n)
	}
	// The attacker's side sees its connections closed.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.Copy(io.Discard, c); err == nil {
			closed++
		}
	}
	if closed < 390 {
		t.Errorf("only %d of 400 attack connections saw the server close them", closed)
	}
	if st := getStatus(t, clientFrom("127.0.0.1"), s.base+"/healthz", ""); st != 200 {
		t.Fatalf("/healthz after the attack: %d", st)
	}
}

// One client over its connection cap is refused at once, and another
// client, and the global cap's headroom, are untouched.
func TestPerClientConnectionCap(t *testing.T) {
	l := testLimits()
	l.IdleTimeout = time.Minute // held connections stay for the whole test
	l.ReadHeaderTimeout = time.Minute
	l.MaxConns, l.MaxConnsPerClient = 25, 10
	s := setupLimited(t, l)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 500 {
		held = append(held, dialFrom(t, "127.0.0.1", s.addr))
	}
	// Refused connections are closed by the server straight away: reading
	// them ends at once rather than at the deadline.
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; {
		n = 0
		for _, c := range held {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err == io.EOF {
				n++
			}
		}
		if n >= 490 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 500 connections over the cap of 10 were closed", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := s.ln.Open(); n != 10 {
		t.Fatalf("server holds %d connections from one client, cap 10", n)
	}
	other := clientFrom("127.0.0.2")
	if st := getStatus(t, other, s.base+"/healthz", ""); st != 200 {
		t.Fatalf("/healthz from another client: %d", st)
	}
	if st := getStatus(t, other, s.url(""), s.token); st != 200 {
		t.Fatalf("project from another client: %d", st)
	}
	// The global cap holds too: two more clients fill it, a fourth is
	// refused.
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		for range 10 {
			held = append(held, dialFrom(t, src, s.addr))
		}
	}
	if n := waitOpen(s.ln, 25, 5*time.Second); n > 25 {
		t.Fatalf("server holds %d connections, global cap 25", n)
	}
	c := dialFrom(t, "127.0.0.5", s.addr)
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		t.Fatal("a connection over the global cap was served")
	}
	if s.ln.Refused() < 490 {
		t.Errorf("refused %d connections, want at least 490", s.ln.Refused())
	}
}

// A client that floods requests no valid token vouches for (no token, or
// guessing one) gets 429 with Retry-After and a {"msg"} before its tokens
// are even looked at; another client is served meanwhile, and a client
// with a valid token, the runner included, can go as fast as it likes.
func TestRequestRateLimit(t *testing.T) {
	l := testLimits()
	l.RequestRate, l.RequestBurst = 5, 10
	s := setupLimited(t, l)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).DialContext}}
	do := func(method, url, token, body string) (int, http.Header, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		if token != "" {
			req.Header.Set("Authorization", "OAuth "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header, b
	}

	// Token guessing.
	counts := map[int]int{}
	var hdr http.Header
	var body []byte
	for i := range 100 {
		st, h, b := do("GET", s.url("/tasks"), fmt.Sprintf("guess-%d", i), "")
		counts[st]++
		if st == http.StatusTooManyRequests && hdr == nil {
			hdr, body = h, b
		}
	}
	if counts[http.StatusUnauthorized] > 30 || counts[http.StatusTooManyRequests] < 70 {
		t.Fatalf("100 quick guesses at a limit of 5/s burst 10: %v", counts)
	}
	if ra := hdr.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	var e wire.Error
	if json.Unmarshal(body, &e) != nil || !strings.Contains(e.Msg, "Too many requests") {
		t.Errorf("429 body %s", body)
	}
	if st := getStatus(t, clientFrom("127.0.0.2"), s.url("/tasks"), s.token); st != 200 {
		t.Errorf("another client: %d", st)
	}
	if st := getStatus(t, c, s.base+"/healthz", ""); st != 200 {
		t.Errorf("/healthz while limited: %d", st)
	}

	// Valid tokens give their share back: far more than the burst passes.
	time.Sleep(2500 * time.Millisecond) // refill
	for i := range 300 {
		if st, _, b := do("GET", s.url("/tasks"), s.token, ""); st != 200 {
			t.Fatalf("request %d with a valid token: %d %s", i, st, b)
		}
		if i%10 == 0 {
			if st, _, b := do("POST", s.base+"/runner/lease", s.token, `{"runner_id":"r1","max":1}`); st != 200 {
				t.Fatalf("runner lease %d: %d %s", i, st, b)
			}
		}
	}
}

// Legitimate long requests survive short timeouts: a body that trickles
// in well above the minimum rate for several body timeouts, and the
// runner's long-poll lease that waits longer than the write timeout.
func TestSlowButSteadyRequestsPass(t *testing.T) {
	l := testLimits() // body 1 s, write 2 s, min 1 KiB/s
	s := setupLimited(t, l)

	t.Run("trickled body", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(`{"tasks":[{"code_name":"nope","payload":"`))
			for range 15 { // 3 s, three body timeouts
				pw.Write([]byte(strings.Repeat("x", 2048)))
				time.Sleep(200 * time.Millisecond)
			}
			pw.Write([]byte(`"}]}`))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", s.url("/tasks"), pr)
		req.Header.Set("Authorization", "OAuth "+s.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The code does not exist: the point is that the whole body was
		// read and judged, not cut off.
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if strings.Contains(string(b), "too slowly") {
			t.Fatalf("steady body cut off: %s", b)
		}
	})
	t.Run("body below the minimum rate", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", s.addr)
		defer c.Close()
		fmt.Fprintf(c, "POST /2/projects/%s/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth %s\r\nContent-Length: 100000\r\n\r\n", s.project, s.token)
		// A byte every half second never trips the 1 s wait for the next
		// bytes, but averages far below 1 KiB/s.
		var mu sync.Mutex
		stop := false
		go func() {
			for range 20 {
				mu.Lock()
				if stop {
					mu.Unlock()
					return
				}
				mu.Unlock()
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
		defer func() { mu.Lock(); stop = true; mu.Unlock() }()
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a body below the minimum rate: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "bytes/s") {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	})
	t.Run("long-poll lease", func(t *testing.T) {
		start := time.Now()
		req, _ := http.NewRequest("POST", s.base+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1,"wait_ms":3500}`))
		req.Header.Set("Authorization", "OAuth "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("lease waiting past the write timeout: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if el := time.Since(start); el < 3*time.Second {
			t.Fatalf("lease answered after %s; it did not wait", el)
		}
	})
}
