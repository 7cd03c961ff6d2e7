package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mayfly-run/mayfly/internal/store"
)

// TestMapErr checks the one place that turns PostgreSQL's errors into the
// store's sentinels, a full disk included, which a test cannot cheaply
// make a real server report.
func TestMapErr(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{pgx.ErrNoRows, store.ErrNotFound},
		{fmt.Errorf("scan: %w", pgx.ErrNoRows), store.ErrNotFound},
		{&pgconn.PgError{Code: "23505", Message: "duplicate key"}, store.ErrConflict},
		{&pgconn.PgError{Code: "23503", Message: "foreign key"}, store.ErrNotFound},
		{&pgconn.PgError{Code: "53100", Message: "could not extend file: No space left on device"}, store.ErrNoSpace},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "53100"}), store.ErrNoSpace},
	} {
		if got := mapErr(tc.err); !errors.Is(got, tc.want) {
			t.Errorf("mapErr(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
	other := &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	if got := mapErr(other); got != error(other) {
		t.Errorf("mapErr(%v) = %v; want it unchanged", other, got)
	}
	if mapErr(nil) != nil {
		t.Error("mapErr(nil) is not nil")
	}
}
