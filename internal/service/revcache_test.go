package service

import (
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// A cached revision is served until it is revisionTTL old (a deletion on
// another server is seen by then) or its code is deleted here.
func TestRevisionCacheForgets(t *testing.T) {
	var c revisionCache
	t0 := time.Now()
	c.put(store.CodeRevision{ID: "r1", CodeID: "c1"}, t0)
	c.put(store.CodeRevision{ID: "r2", CodeID: "c2"}, t0)
	if _, ok := c.get("r1", t0.Add(revisionTTL-time.Millisecond)); !ok {
		t.Fatal("fresh entry not served")
	}
	if _, ok := c.get("r1", t0.Add(revisionTTL)); ok {
		t.Fatal("entry served past its TTL")
	}
	if _, ok := c.get("r1", t0.Add(-time.Second)); ok {
		t.Fatal("entry served to a clock that went back")
	}
	c.forget("c2")
	if _, ok := c.get("r2", t0); ok {
		t.Fatal("revision of a deleted code still served")
	}
	for i := range revisionCacheMax + 1 {
		c.put(store.CodeRevision{ID: string(rune(i)), CodeID: "c"}, t0)
	}
	if len(c.m) > revisionCacheMax {
		t.Fatalf("cache holds %d entries, bound %d", len(c.m), revisionCacheMax)
	}
}
