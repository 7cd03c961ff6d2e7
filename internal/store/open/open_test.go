package open_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mayfly-run/mayfly/internal/store/open"
	"github.com/mayfly-run/mayfly/internal/store/postgres"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, kind, target string
	}{
		{"sqlite:///var/lib/mayfly/mayfly.db", open.KindSQLite, "/var/lib/mayfly/mayfly.db"},
		{"SQLITE:///data/m.db", open.KindSQLite, "/data/m.db"},
		{"/var/lib/mayfly/mayfly.db", open.KindSQLite, "/var/lib/mayfly/mayfly.db"},
		{"data/mayfly.db", open.KindSQLite, "data/mayfly.db"},
		{"./mayfly.db", open.KindSQLite, "./mayfly.db"},
		{"postgres://u:p@db:5432/mayfly?sslmode=require", open.KindPostgres, "postgres://u:p@db:5432/mayfly?sslmode=require"},
		{"postgresql://db/mayfly", open.KindPostgres, "postgresql://db/mayfly"},
	} {
		kind, target, err := open.Resolve(tc.url)
		if err != nil || kind != tc.kind || target != tc.target {
			t.Errorf("Resolve(%q) = %q, %q, %v; want %q, %q", tc.url, kind, target, err, tc.kind, tc.target)
		}
	}
	for _, bad := range []string{
		"", "mysql://db/x", "sqlite://host/x.db", "sqlite://relative.db", "sqlite:///x.db?mode=memory",
		"file:x.db", "sqlite:x.db", "s3://bucket/x",
	} {
		if kind, target, err := open.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %q, %q; want an error", bad, kind, target)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mayfly.db")
	for _, u := range []string{"sqlite://" + path, path} {
		s, err := open.Open(t.Context(), u)
		if err != nil {
			t.Fatalf("open %s: %v", u, err)
		}
		if _, ok := s.(*sqlite.Store); !ok {
			t.Fatalf("open %s gave a %T, want *sqlite.Store", u, s)
		}
		s.Close()
	}
}

func TestOpenPostgres(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	s, err := open.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	defer s.Close()
	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("open %s gave a %T, want *postgres.Store", url, s)
	}
	if _, err := s.CountProjects(t.Context()); err != nil {
		t.Fatalf("count projects: %v", err)
	}
}
