// Package open picks a store backend by its URL, so configuration alone
// chooses between the embedded SQLite store and a shared PostgreSQL one.
// It sits apart from package store so that the backends, which import
// store, are not imported by it.
package open

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/postgres"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
)

// Open opens the store that rawURL names:
//
//	sqlite:///abs/path/mayfly.db   the SQLite file at that path
//	/abs/path/mayfly.db, ./x.db    the same, as a plain path
//	postgres://user:pass@host:5432/db?sslmode=verify-full
//	postgresql://...               a PostgreSQL database
func Open(ctx context.Context, rawURL string) (store.Store, error) {
	kind, target, err := Resolve(rawURL)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindPostgres:
		return postgres.Open(ctx, target)
	default:
		return sqlite.Open(ctx, target)
	}
}

// Backend kinds Resolve tells apart.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Resolve tells which backend rawURL names and what to open it with: the
// file path for SQLite, the URL itself for PostgreSQL.
func Resolve(rawURL string) (kind, target string, err error) {
	scheme, _, hasScheme := strings.Cut(rawURL, "://")
	if !hasScheme {
		if rawURL == "" {
			return "", "", fmt.Errorf("store url is empty")
		}
		// "file:x.db", "sqlite:x.db": a scheme without "//" is more likely
		// a mistake than a file name.
		if before, _, ok := strings.Cut(rawURL, ":"); ok && !strings.ContainsAny(before, `/.`) {
			return "", "", fmt.Errorf("store url %q: want sqlite:///abs/path, a file path or postgres://", rawURL)
		}
		return KindSQLite, rawURL, nil
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3":
		u, err := url.Parse(rawURL)
		if err != nil {
			return "", "", fmt.Errorf("store url: %w", err)
		}
		if u.Host != "" || !filepath.IsAbs(u.Path) || u.RawQuery != "" || u.Fragment != "" {
			return "", "", fmt.Errorf("store url %q: want sqlite:///absolute/path (three slashes, no host, no query)", rawURL)
		}
		return KindSQLite, u.Path, nil
	case "postgres", "postgresql":
		return KindPostgres, rawURL, nil
	default:
		return "", "", fmt.Errorf("store url: unknown scheme %q: want sqlite:// or postgres://", scheme)
	}
}
