package batch

import (
	"slices"
	"sync"
	"testing"
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
	}, func(int) { t.Error("a request was refused before Close") })
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
