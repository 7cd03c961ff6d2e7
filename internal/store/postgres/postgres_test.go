package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/postgres"
	"github.com/mayfly-run/mayfly/internal/store/storetest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// urlStore remembers which database a store is on, so the suite can
// reopen it and open a twin.
type urlStore struct {
	*postgres.Store
	url string
}

func openURL(t testing.TB, url string) *urlStore {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &urlStore{Store: s, url: url}
}

func newStore(t *testing.T) store.Store { return openURL(t, testenv.Postgres(t)) }

func reopenStore(t *testing.T, s store.Store) store.Store {
	us := s.(*urlStore)
	if err := us.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return openURL(t, us.url)
}

func twinStore(t *testing.T, s store.Store) store.Store { return openURL(t, s.(*urlStore).url) }

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Harness{New: newStore, Reopen: reopenStore, Twin: twinStore})
}

// TestOpenTwiceMigratesOnce opens an existing database again: the
// migrations must see it is up to date and leave the data alone.
func TestOpenTwiceMigratesOnce(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	s := openURL(t, url)
	p := store.Project{ID: storetest.NewID(), Name: "p", CreatedAt: time.Now()}
	if err := s.CreateProject(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openURL(t, url)
	if n, err := s.CountProjects(t.Context()); err != nil || n != 1 {
		t.Fatalf("count projects after reopen: %d, %v", n, err)
	}
}

// TestConcurrentOpenMigratesOnce starts several servers' stores on one
// empty database at once: the advisory lock lets one migrate while the
// others wait, so none fails on a half-made schema or a duplicate table.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent open: %v", err)
	}
	s := openURL(t, url)
	var versions, max int
	if err := s.Pool().QueryRow(t.Context(),
		`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&versions, &max); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("list migrations: %v", err)
	}
	if want := len(files); versions != want || max != want {
		t.Fatalf("schema_migrations holds %d versions up to %d; want %d up to %d", versions, max, want, want)
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	if s, err := postgres.Open(t.Context(), "postgres://127.0.0.1:1/x?connect_timeout=2&sslmode=disable"); err == nil {
		s.Close()
		t.Fatal("open on a port where nothing listens succeeded")
	}
}
