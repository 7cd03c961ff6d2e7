// Package open picks the blob store a location names, so configuration
// alone chooses where code packages live: file:///abs/path or a plain path
// is the local directory store, s3://bucket/prefix an S3-compatible one.
package open

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/blob/s3"
)

// Open returns the store at location. S3 takes its endpoint, region and
// credentials from the AWS variables (see s3.ParseURL).
func Open(ctx context.Context, location string) (blob.Store, error) {
	scheme, _, ok := strings.Cut(location, "://")
	if !ok {
		if location == "" {
			return nil, fmt.Errorf("empty blob store location")
		}
		return fs.New(location)
	}
	switch strings.ToLower(scheme) {
	case "file":
		dir, err := filePath(location)
		if err != nil {
			return nil, err
		}
		return fs.New(dir)
	case "s3":
		return s3.New(ctx, location)
	}
	return nil, fmt.Errorf("blob store location %q: unknown scheme %q (want file:// or s3://)", location, scheme)
}

// filePath reads file:///abs/path (or file://localhost/abs/path).
func filePath(location string) (string, error) {
	u, err := url.Parse(location)
	if err != nil {
		return "", fmt.Errorf("blob store location %q: %w", location, err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("blob store location %q: file URLs name a local path (file:///abs/path), not host %q", location, u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("blob store location %q: want file:///absolute/path", location)
	}
	return u.Path, nil
}
