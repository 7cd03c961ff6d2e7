package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mayfly-run/mayfly/internal/wire"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// touchAfter: a package's mod time records its last use, refreshed when
// it is older than this, so the hot path rarely writes to the disk.
const touchAfter = time.Minute

// packageCache keeps code packages on the runner's disk by checksum, so a
// revision is fetched once however many of its tasks run here. A package
// unused for the cache TTL is removed by prune.
type packageCache struct {
	dir   string
	queue Queue
	group singleflight.Group
	// mu orders a use (stat and touch) against prune's check and remove,
	// so a package is never removed between its use and its reading.
	mu sync.Mutex
}

func newPackageCache(dir string, q Queue) (*packageCache, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "mayfly-packages-")
		if err != nil {
			return nil, fmt.Errorf("create package cache: %w", err)
		}
		dir = d
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create package cache %s: %w", dir, err)
	}
	return &packageCache{dir: dir, queue: q}, nil
}

// path returns the local file of a job's package, fetching it if needed.
func (c *packageCache) path(ctx context.Context, code wire.JobCode) (string, error) {
	if !sha256Hex.MatchString(code.PackageSHA256) {
		return "", fmt.Errorf("code revision %s has no valid package checksum", code.RevisionID)
	}
	p := filepath.Join(c.dir, code.PackageSHA256+".zip")
	if c.use(p) {
		return p, nil
	}
	_, err, _ := c.group.Do(code.PackageSHA256, func() (any, error) {
		if _, err := os.Stat(p); err == nil {
			return nil, nil
		}
		return nil, c.fetch(ctx, code, p)
	})
	return p, err
}

func (c *packageCache) fetch(ctx context.Context, code wire.JobCode, dst string) error {
	rc, err := c.queue.OpenPackage(ctx, code.RevisionID)
	if err != nil {
		return fmt.Errorf("fetch package of revision %s: %w", code.RevisionID, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(c.dir, ".fetch-*")
	if err != nil {
		return fmt.Errorf("cache package: %w", err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), rc)
	if err == nil {
		// Synced before the rename: after a power cut the name must not
		// stand for an empty or torn file, which would be taken as cached.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fetch package of revision %s: %w", code.RevisionID, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != code.PackageSHA256 {
		return errors.New("package of revision " + code.RevisionID + " does not match its checksum (got " + got + ")")
	}
	return os.Rename(f.Name(), dst)
}

// use reports whether p is cached and, if so, records its use.
func (c *packageCache) use(p string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	if now := time.Now(); now.Sub(st.ModTime()) > touchAfter {
		_ = os.Chtimes(p, now, now)
	}
	return true
}

// prune removes packages last used before the given time, and fetches a
// crash interrupted, and returns how many files it removed.
func (c *packageCache) prune(before time.Time) (int, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, fmt.Errorf("prune package cache %s: %w", c.dir, err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".zip") || strings.HasPrefix(name, ".fetch-")) {
			continue
		}
		p := filepath.Join(c.dir, name)
		c.mu.Lock()
		if st, err := os.Stat(p); err == nil && st.ModTime().Before(before) && os.Remove(p) == nil {
			n++
		}
		c.mu.Unlock()
	}
	return n, nil
}
