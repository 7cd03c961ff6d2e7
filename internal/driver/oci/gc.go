package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// debrisAge is how old a temporary directory or an unlabelled bundle must
// be before the sweep takes it for a crash's debris: another driver on the
// same directory may have made it a moment ago and not locked or labelled
// it yet.
const debrisAge = time.Minute

// lockDir opens dir and takes an exclusive lock on it, held until the file
// is closed (or its process dies). Whoever fills or removes a directory
// under tmp/ holds it, so the sweep of another driver leaves it alone.
func lockDir(dir string, wait bool) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// sweep removes what a crash leaves behind: half-written layers and
// half-removed bundles under tmp/, bundles that never got their labels,
// and stack layers no image of the engine has any more (with the code
// layers baked on them, which no task can ask for again). It runs at
// start; errors are logged, not returned: debris costs disk, not tasks.
func (d *Driver) sweep(ctx context.Context) {
	n, err := d.sweepTmp(time.Now())
	if err != nil {
		d.log.Warn("could not remove every half-written directory", "dir", filepath.Join(d.dir, "tmp"), "err", err)
	}
	m, err := d.sweepUnlabelled(ctx, time.Now())
	if err != nil {
		d.log.Warn("could not remove every unlabelled bundle", "err", err)
	}
	if n+m > 0 {
		d.log.Info("removed what an earlier run left half done", "temporary", n, "bundles", m)
	}
	if _, _, err := d.collectLayers(ctx); err != nil {
		d.log.Warn("could not remove stale stack layers", "err", err)
	}
}

// sweepTmp removes the entries of tmp/ older than debrisAge that nobody
// holds locked.
func (d *Driver) sweepTmp(now time.Time) (int, error) {
	tmp := filepath.Join(d.dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", tmp, err)
	}
	n := 0
	var errs []error
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < debrisAge {
			continue
		}
		if !e.IsDir() {
			if err := os.Remove(p); err == nil {
				n++
			}
			continue
		}
		f, err := lockDir(p, false)
		if err != nil {
			continue // held: someone is writing or removing it
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		} else {
			n++
		}
		f.Close()
	}
	return n, errors.Join(errs...)
}

// sweepUnlabelled removes bundles older than debrisAge without labels: a
// start that died between making the bundle and labelling it. No runner
// can name them as its own, so RemoveOrphans never would.
func (d *Driver) sweepUnlabelled(ctx context.Context, now time.Time) (int, error) {
	dir := filepath.Join(d.dir, "bundles")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("list bundles: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, e.Name(), labelsFile)); err == nil {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < debrisAge {
			continue
		}
		gone, err := d.removeContainer(ctx, e.Name())
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// collectLayers removes the stack layers whose image id is no longer the
// engine's id of the ref they were exported for (the stack was rebuilt or
// removed), and the code layers baked on them: the runner names code
// layers after their stack's current id, so no task asks for those again.
// A layer a container has mounted stays. Nothing is removed when the
// engine cannot be asked.
func (d *Driver) collectLayers(ctx context.Context) (bases, codes int, err error) {
	baseRoot := filepath.Join(d.dir, "layers", "base")
	ents, err := os.ReadDir(baseRoot)
	if err != nil {
		return 0, 0, fmt.Errorf("list stack layers: %w", err)
	}
	metas := map[string]layerMeta{} // by dir name
	current := map[string]bool{}    // image ids some ref has now
	asked := map[string]bool{}
	for _, e := range ents {
		m, err := readMeta(filepath.Join(baseRoot, e.Name()))
		if err != nil {
			continue // not a layer: tmp/ is where half-written ones are
		}
		metas[e.Name()] = m
		if asked[m.Ref] {
			continue
		}
		asked[m.Ref] = true
		id, _, err := d.engineID(ctx, m.Ref)
		if err != nil {
			return 0, 0, err
		}
		if id != "" {
			current[baseKey(id)] = true
		}
	}
	stale := map[string]bool{}
	for name, m := range metas {
		if !current[name] {
			stale[baseKey(m.ImageID)] = true
		}
	}
	if len(stale) == 0 {
		return 0, 0, nil
	}
	list, err := d.codeLayers()
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	needed := map[string]bool{}
	for _, m := range list {
		if !stale[baseKey(m.ImageID)] {
			continue
		}
		gone, err := d.RemoveImage(ctx, m.Ref)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			codes++
		} else {
			needed[baseKey(m.ImageID)] = true
		}
	}
	for key := range stale {
		if needed[key] {
			continue
		}
		dir := filepath.Join(baseRoot, key)
		if inUse, err := d.layerInUse(filepath.Join(dir, "rootfs")); err != nil || inUse {
			errs = append(errs, err)
			continue
		}
		if err := d.removeLayerDir(dir, "rm-base-"+key); err != nil {
			errs = append(errs, err)
			continue
		}
		bases++
	}
	if bases+codes > 0 {
		d.log.Info("removed layers of stacks rebuilt or gone", "stack_layers", bases, "code_layers", codes)
	}
	return bases, codes, errors.Join(errs...)
}

// removeLayerDir renames a layer under tmp/ (so nothing finds it half
// removed) and removes it there, holding the lock that keeps a sweep off.
func (d *Driver) removeLayerDir(dir, name string) error {
	f, err := lockDir(dir, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	trash := filepath.Join(d.dir, "tmp", name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove layer %s: %w", filepath.Base(dir), err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove layer %s: %w", filepath.Base(dir), err)
	}
	return nil
}
