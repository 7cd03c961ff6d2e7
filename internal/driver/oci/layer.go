package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// Layers: layers/base/<image id hex> is a stack's root file system as the
// engine exports it; layers/code/<hash of ref> is a baked code package. Each
// is a directory with rootfs/ and meta.json, written under tmp/ and renamed
// into place, so a crash never leaves a half layer where a task could use
// it.

// imageConfig is what of an image's config a task's start needs.
type imageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkDir    string   `json:"workdir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// layerMeta is a layer's meta.json.
type layerMeta struct {
	Ref     string            `json:"ref"`
	ImageID string            `json:"image_id"` // of the base image
	Base    string            `json:"base,omitempty"`
	Config  imageConfig       `json:"config"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
}

// image is what Start needs of an image: its lower layers, top first.
type image struct {
	lowers []string
	config imageConfig
}

// idTTL bounds how stale the engine's id for a stack ref may be, so a
// rebuilt stack is picked up without an engine round trip per task.
const idTTL = 10 * time.Second

type cachedID struct {
	id string
	at time.Time
}

func codeKey(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return hex.EncodeToString(sum[:16])
}

func baseKey(id string) string {
	return strings.TrimPrefix(id, "sha256:")
}

func (d *Driver) codeDir(ref string) string {
	return filepath.Join(d.dir, "layers", "code", codeKey(ref))
}
func (d *Driver) baseDir(id string) string {
	return filepath.Join(d.dir, "layers", "base", baseKey(id))
}

func readMeta(dir string) (layerMeta, error) {
	var m layerMeta
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("layer %s: %w", dir, err)
	}
	return m, nil
}

// engineID returns the engine's id for ref ("" when it has none), cached
// for idTTL.
func (d *Driver) engineID(ctx context.Context, ref string) (string, imageConfig, error) {
	img, err := d.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", imageConfig{}, nil
	}
	if err != nil {
		return "", imageConfig{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	var cfg imageConfig
	if img.Config != nil {
		cfg = imageConfig{Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd, Env: img.Config.Env,
			WorkDir: img.Config.WorkingDir, User: img.Config.User}
	}
	d.ids.Store(ref, cachedID{id: img.ID, at: time.Now()})
	return img.ID, cfg, nil
}

// ImageID returns a baked code layer's id, else the engine's id of ref, or
// "" when neither has it.
func (d *Driver) ImageID(ctx context.Context, ref string) (string, error) {
	if m, err := readMeta(d.codeDir(ref)); err == nil && m.Ref == ref {
		return "oci-code:" + codeKey(ref), nil
	}
	id, _, err := d.engineID(ctx, ref)
	return id, err
}

// ImageExists reports whether ref is a baked code layer or an image of the
// engine; it never pulls.
func (d *Driver) ImageExists(ctx context.Context, ref string) (bool, error) {
	id, err := d.ImageID(ctx, ref)
	return id != "", err
}

// resolve finds the layers of ref, exporting a stack from the engine the
// first time. A code layer and a stack whose id is fresh in the cache cost
// no engine round trip.
func (d *Driver) resolve(ctx context.Context, ref string) (image, error) {
	if m, err := readMeta(d.codeDir(ref)); err == nil && m.Ref == ref {
		base := d.baseDir(m.ImageID)
		if _, err := os.Stat(filepath.Join(base, "meta.json")); err != nil {
			return image{}, fmt.Errorf("image %s: its base layer %s is gone", ref, m.ImageID)
		}
		return image{lowers: []string{filepath.Join(d.codeDir(ref), "rootfs"), filepath.Join(base, "rootfs")}, config: m.Config}, nil
	}
	if v, ok := d.ids.Load(ref); ok && time.Since(v.(cachedID).at) < idTTL {
		if m, err := readMeta(d.baseDir(v.(cachedID).id)); err == nil {
			return image{lowers: []string{filepath.Join(d.baseDir(m.ImageID), "rootfs")}, config: m.Config}, nil
		}
	}
	m, err := d.base(ctx, ref)
	if err != nil {
		return image{}, err
	}
	return image{lowers: []string{filepath.Join(d.baseDir(m.ImageID), "rootfs")}, config: m.Config}, nil
}

// base returns the meta of ref's base layer, exporting it from the engine
// when missing.
func (d *Driver) base(ctx context.Context, ref string) (layerMeta, error) {
	id, cfg, err := d.engineID(ctx, ref)
	if err != nil {
		return layerMeta{}, err
	}
	if id == "" {
		return layerMeta{}, fmt.Errorf("image %s not found (the oci driver takes stacks from the Docker engine and never pulls)", ref)
	}
	dir := d.baseDir(id)
	if m, err := readMeta(dir); err == nil {
		return m, nil
	}
	_, err, _ = d.exports.Do(id, func() (any, error) {
		if _, err := os.Stat(filepath.Join(dir, "meta.json")); err == nil {
			return nil, nil
		}
		if err := d.export(ctx, ref, id, cfg, dir); err != nil {
			return nil, err
		}
		// A new id of a stack already exported is a rebuild: the old
		// layer goes (unless a task still has it mounted), off this
		// task's path.
		d.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if _, _, err := d.collectLayers(ctx); err != nil {
				d.log.Warn("could not remove stale stack layers", "err", err)
			}
		})
		return nil, nil
	})
	if err != nil {
		return layerMeta{}, err
	}
	return readMeta(dir)
}

// export unpacks the root file system of image id into dir, by way of a
// container that is created and never started.
func (d *Driver) export(ctx context.Context, ref, id string, cfg imageConfig, dir string) (err error) {
	t0 := time.Now()
	created, err := d.cli.ContainerCreate(ctx, &container.Config{Image: id, Cmd: []string{"true"}, Entrypoint: []string{}},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return fmt.Errorf("export image %s: create container: %w", ref, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if rerr := d.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && err == nil {
			err = fmt.Errorf("export image %s: remove its container: %w", ref, rerr)
		}
	}()
	rc, err := d.cli.ContainerExport(ctx, created.ID)
	if err != nil {
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	defer rc.Close()
	meta := layerMeta{Ref: ref, ImageID: id, Config: cfg, Created: time.Now().UTC()}
	if err := d.writeLayer(dir, meta, func(rootfs string) error { return untar(rc, rootfs, "") }); err != nil {
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	d.log.Info("exported stack root file system", "image", ref, "id", id, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// writeLayer fills a new layer under tmp/ and renames it to dir.
func (d *Driver) writeLayer(dir string, meta layerMeta, fill func(rootfs string) error) error {
	tmp, err := os.MkdirTemp(filepath.Join(d.dir, "tmp"), "layer-")
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	// Locked while written: the start-up sweep of another driver on this
	// directory takes only what nobody holds.
	lock, err := lockDir(tmp, true)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("make layer: %w", err)
	}
	defer lock.Close()
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	if err := fill(rootfs); err != nil {
		return err
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), data, 0o600); err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	// A layer outlives crashes; its content must be on disk before its
	// name says it is complete.
	syncDir(tmp)
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "meta.json")); serr == nil {
			return nil // made meanwhile by another process
		}
		return fmt.Errorf("make layer: %w", err)
	}
	return nil
}

// Bake unpacks spec.Archive into a code layer of its own above spec.Base's
// root file system. The image config is the base's with spec's changes.
func (d *Driver) Bake(ctx context.Context, spec driver.BakeSpec) error {
	bm, err := d.base(ctx, spec.Base)
	if err != nil {
		return fmt.Errorf("bake %s: %w", spec.Ref, err)
	}
	cfg := bm.Config
	if spec.WorkDir != "" {
		cfg.WorkDir = spec.WorkDir
	}
	if len(spec.EntrypointPrefix) > 0 {
		cfg.Entrypoint = append(append([]string{}, spec.EntrypointPrefix...), bm.Config.Entrypoint...)
	}
	meta := layerMeta{Ref: spec.Ref, ImageID: bm.ImageID, Base: spec.Base, Config: cfg, Labels: spec.Labels, Created: time.Now().UTC()}
	baseRoot := filepath.Join(d.baseDir(bm.ImageID), "rootfs")
	err = d.writeLayer(d.codeDir(spec.Ref), meta, func(rootfs string) error {
		if spec.Archive == nil {
			return nil
		}
		return untar(spec.Archive, rootfs, baseRoot)
	})
	if err != nil {
		return fmt.Errorf("bake %s: %w", spec.Ref, err)
	}
	return nil
}

// codeLayers lists the baked code layers.
func (d *Driver) codeLayers() ([]layerMeta, error) {
	ents, err := os.ReadDir(filepath.Join(d.dir, "layers", "code"))
	if err != nil {
		return nil, fmt.Errorf("list code layers: %w", err)
	}
	var out []layerMeta
	for _, e := range ents {
		if m, err := readMeta(filepath.Join(d.dir, "layers", "code", e.Name())); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func hasLabels(m layerMeta, labels map[string]string) bool {
	for k, v := range labels {
		if m.Labels[k] != v {
			return false
		}
	}
	return true
}

// ListImages returns the refs of the code layers carrying every label.
func (d *Driver) ListImages(ctx context.Context, labels map[string]string) ([]string, error) {
	list, err := d.codeLayers()
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, m := range list {
		if hasLabels(m, labels) {
			refs = append(refs, m.Ref)
		}
	}
	return refs, nil
}

// RemoveImages removes the code layers carrying every label except keep and
// those a container uses.
func (d *Driver) RemoveImages(ctx context.Context, labels map[string]string, keep string) (int, error) {
	refs, err := d.ListImages(ctx, labels)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, ref := range refs {
		if ref == keep {
			continue
		}
		gone, err := d.RemoveImage(ctx, ref)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// RemoveImage removes the code layer of ref unless a container uses it.
func (d *Driver) RemoveImage(ctx context.Context, ref string) (bool, error) {
	dir := d.codeDir(ref)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	inUse, err := d.layerInUse(filepath.Join(dir, "rootfs"))
	if err != nil || inUse {
		return false, err
	}
	if err := d.removeLayerDir(dir, "rm-layer-"+codeKey(ref)); err != nil {
		return false, fmt.Errorf("remove image %s: %w", ref, err)
	}
	return true, nil
}

// layerInUse tells whether an overlay mount has rootfs among its lower
// layers. A task starting at the same moment may still be about to mount
// it; its start then fails and the runner bakes again.
func (d *Driver) layerInUse(rootfs string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mounts: %w", err)
	}
	return strings.Contains(string(data), rootfs), nil
}

// StackRootFS returns the directory of ref's stack root file system (the
// bottom layer of its tasks), exporting it from the engine the first time.
// The benchmark runs the bare runtime on it.
func (d *Driver) StackRootFS(ctx context.Context, ref string) (string, error) {
	img, err := d.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.lowers[len(img.lowers)-1], nil
}
