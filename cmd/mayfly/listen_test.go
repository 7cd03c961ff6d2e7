package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The attack on the real binary: under a low open-file limit (200), one
// client opens 400 connections and sends nothing. Before limits, the
// server ran out of descriptors and /healthz stopped answering. Now the
// client gets its share of the automatic cap (half the file limit, a
// quarter of that per client), the rest are closed at once, and another
// client is served throughout.
func TestServerSurvivesConnectionFloodUnderLowFileLimit(t *testing.T) {
	addr := freeAddr(t)
	var out strings.Builder
	cmd := exec.Command("sh", "-c", `ulimit -n 200 && exec "$0" server --listen "$1" --data-dir "$2"`, mayflyBin(t), addr, t.TempDir())
	cmd.Env = append(cmd.Environ(), "MAYFLY_RUNNER=false", "MAYFLY_LOG_LEVEL=warn",
		"MAYFLY_READ_HEADER_TIMEOUT=1m") // the flood must not just time out
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	other := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	health := func() error {
		resp, err := other.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 400 {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	// Count the connections the server keeps: the rest it closes at once.
	time.Sleep(500 * time.Millisecond)
	held := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			held++
		}
	}
	t.Logf("of 400 connections from one client under a file limit of 200, the server holds %d", held)
	if held > 25 {
		t.Errorf("server holds %d connections from one client; want at most 25 (a quarter of half of 200)", held)
	}
	for i := range 5 {
		if err := health(); err != nil {
			t.Fatalf("/healthz from another client during the flood (try %d): %v", i, err)
		}
	}
}
