package id

import "testing"

func TestNew(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		s := New()
		if !Valid(s) {
			t.Fatalf("New() = %q, not 24 hex characters", s)
		}
		if seen[s] {
			t.Fatalf("New() repeated %q", s)
		}
		seen[s] = true
	}
	for _, bad := range []string{"", "abc", "ZZZZZZZZZZZZZZZZZZZZZZZZ", "0123456789abcdef012345678"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
