package service

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	fixed := store.CodeRevision{RetriesDelay: 10}
	exp := store.CodeRevision{RetriesDelay: 10, RetriesBackoff: "exponential"}
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 10 * time.Second, 5: 10 * time.Second} {
		if got := retryDelay(fixed, n); got != want {
			t.Errorf("fixed retry %d: %s, want %s", n, got, want)
		}
	}
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 40: maxRetryDelay} {
		if got := retryDelay(exp, n); got != want {
			t.Errorf("exponential retry %d: %s, want %s", n, got, want)
		}
	}
}

func TestTaskToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Service{cfg: Config{TaskTokenKey: []byte("0123456789abcdef0123456789abcdef")}, now: func() time.Time { return now }}
	tok := s.MintTaskToken("p1", "t1", time.Hour)
	p, tk, err := s.taskToken(tok)
	if err != nil || p != "p1" || tk != "t1" {
		t.Fatalf("taskToken(%q) = %q %q %v", tok, p, tk, err)
	}
	// A token edited to name another task fails its MAC.
	forged := strings.Replace(tok, ".t1.", ".t2.", 1)
	if _, _, err := s.taskToken(forged); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("forged token accepted: %v", err)
	}
	other := &Service{cfg: Config{TaskTokenKey: []byte("another key, another server.....")}, now: s.now}
	if _, _, err := other.taskToken(tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("token accepted under another key: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, _, err := s.taskToken(tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired token accepted: %v", err)
	}
	keyless := &Service{now: s.now}
	if _, _, err := keyless.taskToken(keyless.MintTaskToken("p", "t", time.Hour)); err == nil {
		t.Fatal("a server without a key accepted a task token")
	}
}
