package mayfly

import "testing"

func TestStatusStateMachine(t *testing.T) {
	ends := []Status{StatusComplete, StatusError, StatusTimeout, StatusKilled, StatusCancelled}
	for _, s := range Statuses {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if Status("paused").Valid() || Status("").Valid() {
		t.Error("unknown statuses are valid")
	}
	for _, s := range []Status{StatusQueued, StatusPreparing, StatusRunning} {
		if s.Terminal() {
			t.Errorf("%s is terminal", s)
		}
	}
	for _, e := range ends {
		if !e.Terminal() {
			t.Errorf("%s is not terminal", e)
		}
		for _, to := range Statuses {
			if CanMove(e, to) {
				t.Errorf("an ended task moves %s -> %s", e, to)
			}
		}
	}
	for _, c := range []struct {
		from, to Status
		ok       bool
	}{
		{StatusQueued, StatusPreparing, true},
		{StatusQueued, StatusCancelled, true},
		{StatusQueued, StatusRunning, false}, // never skips the lease
		{StatusQueued, StatusComplete, false},
		{StatusPreparing, StatusRunning, true},
		{StatusPreparing, StatusQueued, true}, // lease ran out, or given back
		{StatusPreparing, StatusError, true},
		{StatusRunning, StatusQueued, true},
		{StatusRunning, StatusPreparing, false},
		{StatusRunning, StatusKilled, true},
	} {
		if got := CanMove(c.from, c.to); got != c.ok {
			t.Errorf("CanMove(%s, %s) = %v, want %v", c.from, c.to, got, c.ok)
		}
	}
}
