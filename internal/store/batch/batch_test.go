package batch

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Requests that arrive while a group is being written wait together and
// are taken in arrival order, as take splits them; nothing is added after
// Close, and Close waits for the group in flight.
func TestGroupsInArrivalOrderAndClose(t *testing.T) {
	var mu sync.Mutex
	var groups [][]int
	hold := make(chan struct{})
	started := make(chan struct{}, 1)
	q := New(1, func(p []int) ([]int, []int) {
		n := min(len(p), 2)
		return p[:n:n], p[n:]
	}, func(g []int) {
		started <- struct{}{}
		if g[0] == 0 {
			<-hold
		}
		mu.Lock()
		groups = append(groups, slices.Clone(g))
		mu.Unlock()
	})
	q.Add(0)
	<-started // the writer holds the first group
	for i := 1; i <= 5; i++ {
		if !q.Add(i) {
			t.Fatalf("Add(%d) refused on an open queue", i)
		}
	}
	if n := q.Waiting(); n != 5 {
		t.Fatalf("%d waiting, want 5", n)
	}
	close(hold)
	for range 3 {
		<-started
	}
	q.Close()
	if q.Add(9) {
		t.Fatal("Add after Close was taken")
	}
	want := [][]int{{0}, {1, 2}, {3, 4}, {5}}
	if !slices.EqualFunc(groups, want, slices.Equal) {
		t.Fatalf("groups %v, want %v", groups, want)
	}
}

// req is a request of the holding tests: held ones are odd.
type req struct {
	n     int
	at    time.Time
	flush bool
}

// holding starts a queue of one writer that holds odd requests for d or
// until count of them wait, and sends each group it writes on the
// returned channel.
func holding(count int, d time.Duration) (*Queue[*req], chan []int) {
	groups := make(chan []int, 100)
	q := NewHolding(1, func(p []*req) ([]*req, []*req) { return p, nil }, func(g []*req) {
		var ns []int
		for _, r := range g {
			ns = append(ns, r.n)
		}
		groups <- ns
	}, Hold[*req]{
		Held:  func(r *req) (bool, time.Time) { return r.n%2 == 1, r.at },
		Flush: func(r *req) bool { return r.flush },
		Count: count, For: d,
	})
	return q, groups
}

func add(q *Queue[*req], n int) { q.Add(&req{n: n, at: time.Now()}) }

// wantGroup fails unless the next group written is want.
func wantGroup(t *testing.T, groups chan []int, want ...int) {
	t.Helper()
	select {
	case g := <-groups:
		if !slices.Equal(g, want) {
			t.Fatalf("group %v, want %v", g, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no group written within 5s, want %v", want)
	}
}

func noGroup(t *testing.T, groups chan []int, for_ time.Duration) {
	t.Helper()
	select {
	case g := <-groups:
		t.Fatalf("group %v written while its requests should wait", g)
	case <-time.After(for_):
	}
}

// A held request waits for its hold to run out; one that is not held
// does not wait for it, and takes nothing held along.
func TestHeldWaitForTheirTime(t *testing.T) {
	q, groups := holding(100, 300*time.Millisecond)
	defer q.Close()
	t0 := time.Now()
	add(q, 1)
	add(q, 2)
	wantGroup(t, groups, 2) // the held 1 waits
	noGroup(t, groups, 100*time.Millisecond)
	add(q, 3)
	wantGroup(t, groups, 1, 3)
	if waited := time.Since(t0); waited < 300*time.Millisecond {
		t.Fatalf("held requests written after %v, before their hold of 300ms", waited)
	}
}

// Held requests go at once when enough of them wait, or with a flush;
// Close writes them rather than leaving or refusing them, as their
// callers wait for an answer.
func TestHeldGoWithoutWaitingForTheirTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		then func(q *Queue[*req])
		want []int
	}{
		{"enough wait", func(q *Queue[*req]) { add(q, 5) }, []int{1, 3, 5}},
		{"a flush", func(q *Queue[*req]) { q.Add(&req{n: 4, flush: true}) }, []int{1, 3, 4}},
		{"close", func(q *Queue[*req]) { q.Close() }, []int{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, groups := holding(3, time.Hour)
			defer q.Close()
			add(q, 1)
			add(q, 3)
			noGroup(t, groups, 50*time.Millisecond)
			tc.then(q)
			wantGroup(t, groups, tc.want...)
		})
	}
}

// Nothing is taken after Close.
func TestNoAddAfterClose(t *testing.T) {
	q, _ := holding(3, time.Hour)
	q.Close()
	if q.Add(&req{n: 5}) {
		t.Fatal("Add after Close was taken")
	}
}
