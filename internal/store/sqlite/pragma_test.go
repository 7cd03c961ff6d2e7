package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// TestPragmas checks the settings the Store's promises rest on: WAL so
// reads run beside the writer, synchronous=FULL so a returned write is on
// disk, foreign keys enforced, and read connections unable to write.
func TestPragmas(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	pragma := func(name string, read bool) string {
		t.Helper()
		db := s.w
		if read {
			db = s.r
		}
		var v string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+name).Scan(&v); err != nil {
			t.Fatalf("pragma %s: %v", name, err)
		}
		return strings.ToLower(v)
	}
	for _, c := range []struct {
		name string
		read bool
		want string
	}{
		{"journal_mode", false, "wal"},
		{"journal_mode", true, "wal"},
		{"synchronous", false, "2"}, // FULL
		{"foreign_keys", false, "1"},
		{"busy_timeout", false, "10000"},
		{"busy_timeout", true, "10000"},
		{"query_only", true, "1"},
	} {
		if got := pragma(c.name, c.read); got != c.want {
			t.Errorf("pragma %s (read pool %v) = %s, want %s", c.name, c.read, got, c.want)
		}
	}
	if _, err := s.r.ExecContext(t.Context(), `INSERT INTO projects (id, name, created_at) VALUES ('x', 'x', 0)`); err == nil {
		t.Error("a read connection wrote")
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := s.r.QueryRowContext(t.Context(), `SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil || version != ms[len(ms)-1].version {
		t.Errorf("schema version %d, %v; want %d", version, err, ms[len(ms)-1].version)
	}
}

// TestWriteTxIsImmediate checks that write transactions take the write lock
// at BEGIN: a deferred one could fail with SQLITE_BUSY halfway through
// when it upgrades from reading to writing.
func TestWriteTxIsImmediate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.w.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()

	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err == nil {
		other.ExecContext(t.Context(), "ROLLBACK")
		t.Fatal("another connection got the write lock while a write transaction was open")
	}
}
