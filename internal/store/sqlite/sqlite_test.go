package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/store/storetest"
)

// fileStore remembers which file a store is on, so the suite can reopen it.
type fileStore struct {
	*sqlite.Store
	path string
}

func openFile(t testing.TB, path string) *fileStore {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return &fileStore{Store: s, path: path}
}

func newStore(t *testing.T) store.Store {
	return openFile(t, filepath.Join(t.TempDir(), "mayfly.db"))
}

func reopenStore(t *testing.T, s store.Store) store.Store {
	fs := s.(*fileStore)
	if err := fs.Close(); err != nil {
		t.Fatalf("close %s: %v", fs.path, err)
	}
	return openFile(t, fs.path)
}

// twinStore opens a second store on the same file, as a second process
// would: SQLite's file locks keep the two writers apart.
func twinStore(t *testing.T, s store.Store) store.Store {
	return openFile(t, s.(*fileStore).path)
}

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Harness{New: newStore, Reopen: reopenStore, Twin: twinStore})
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded; want an error", path)
		}
	}
}

// TestOpenTwiceMigratesOnce opens an existing file again: the migrations
// must see it is up to date and leave the data alone.
func TestOpenTwiceMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mayfly.db")
	s := openFile(t, path)
	p := store.Project{ID: storetest.NewID(), Name: "p", CreatedAt: time.Now()}
	if err := s.CreateProject(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openFile(t, path)
	if n, err := s.CountProjects(t.Context()); err != nil || n != 1 {
		t.Fatalf("count projects after reopen: %d, %v", n, err)
	}
}

func BenchmarkLease(b *testing.B) {
	for _, queued := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			benchLease(b, queued)
		})
	}
}

// benchLease measures one lease of one task plus its finish, with queued
// tasks waiting; the queue is refilled outside the timer if it runs low.
func benchLease(b *testing.B, queued int) {
	ctx := context.Background()
	s := openFile(b, filepath.Join(b.TempDir(), "bench.db"))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	project := store.Project{ID: storetest.NewID(), Name: "bench", CreatedAt: now}
	if err := s.CreateProject(ctx, project); err != nil {
		b.Fatal(err)
	}
	code, err := s.PutCodeRevision(ctx, store.CodeRevision{
		ID: storetest.NewID(), CodeID: storetest.NewID(), ProjectID: project.ID, Name: "bench", CreatedAt: now,
	})
	if err != nil {
		b.Fatal(err)
	}
	fill := func(n int) {
		const batch = 5000
		for n > 0 {
			k := min(n, batch)
			tasks := make([]store.Task, k)
			for i := range tasks {
				tasks[i] = store.Task{
					ID: storetest.NewID(), ProjectID: project.ID, CodeID: code.ID, CodeName: code.Name,
					CodeRevisionID: code.CodeRevision.ID, CodeRev: code.Rev, Status: store.StatusQueued,
					Priority: i % 3, Payload: "{}", Timeout: 3600,
					CreatedAt: now, UpdatedAt: now, DueAt: now.Add(-time.Duration(i) * time.Millisecond),
				}
			}
			if err := s.InsertTasks(ctx, tasks); err != nil {
				b.Fatal(err)
			}
			n -= k
		}
	}
	fill(queued)
	left := queued
	zero := 0

	for b.Loop() {
		if left == 0 {
			b.StopTimer()
			fill(queued)
			left = queued
			b.StartTimer()
		}
		got, err := s.LeaseTasks(ctx, store.LeaseParams{
			RunnerID: "bench", Max: 1, LeaseDuration: time.Minute, Now: now,
		})
		if err != nil || len(got) != 1 {
			b.Fatalf("lease: %d tasks, %v", len(got), err)
		}
		if err := s.FinishTask(ctx, store.FinishParams{
			TaskID: got[0].ID, RunnerID: "bench", Attempt: 1, Status: store.StatusComplete, ExitCode: &zero, Now: now,
		}); err != nil {
			b.Fatal(err)
		}
		left--
	}
}
