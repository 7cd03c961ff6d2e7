package noop

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// The noop driver bakes, as the Docker driver does: the runner then reads
// a code's package once per revision into a "code image" instead of once
// per task, so the runner's work measured on it is the work it does on
// Docker, the default.

var _ driver.Baker = (*Driver)(nil)

// ImageID says every image a runner names as a base is there; a baked one
// is there once Bake made it.
func (d *Driver) ImageID(_ context.Context, ref string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, baked := d.baked[ref]; baked {
		return "baked:" + ref, nil
	}
	if d.isCodeImage(ref) {
		return "", nil
	}
	return "base:" + ref, nil
}

// isCodeImage tells the runner's code images (its repository is
// mayfly/code) from the bases they are baked on.
func (d *Driver) isCodeImage(ref string) bool {
	return strings.HasPrefix(ref, "mayfly/code:")
}

// Bake reads the archive to its end and remembers the image.
func (d *Driver) Bake(ctx context.Context, spec driver.BakeSpec) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bake %s: %w", spec.Ref, err)
	}
	if spec.Archive != nil {
		if _, err := io.Copy(io.Discard, spec.Archive); err != nil {
			return fmt.Errorf("bake %s: read files: %w", spec.Ref, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.baked == nil {
		d.baked = map[string]map[string]string{}
	}
	d.baked[spec.Ref] = maps.Clone(spec.Labels)
	return nil
}

// RemoveImages forgets the baked images carrying every label given, but
// keep.
func (d *Driver) RemoveImages(_ context.Context, labels map[string]string, keep string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for ref, have := range d.baked {
		if ref == keep {
			continue
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if match {
			delete(d.baked, ref)
			n++
		}
	}
	return n, nil
}
