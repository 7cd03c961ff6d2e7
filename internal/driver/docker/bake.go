package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/mayfly-run/mayfly/internal/driver"
)

var (
	_ driver.Baker       = (*Driver)(nil)
	_ driver.ImagePruner = (*Driver)(nil)
)

// ImageID returns the id of ref, or "" when the engine has no such image.
func (d *Driver) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := d.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// Bake makes spec.Ref from spec.Base plus spec.Archive by committing a
// container that never ran: the copy keeps the archive's owners, which a
// Dockerfile COPY would not without BuildKit.
func (d *Driver) Bake(ctx context.Context, spec driver.BakeSpec) (err error) {
	base, err := d.cli.ImageInspect(ctx, spec.Base)
	if err != nil {
		return fmt.Errorf("bake %s: inspect %s: %w", spec.Ref, spec.Base, err)
	}
	// The container is created as plainly as possible, since the commit
	// keeps its config: no labels of ours, and a command only when the
	// base has none (the engine refuses to create without one).
	var cmd []string
	if base.Config == nil || (len(base.Config.Cmd) == 0 && len(base.Config.Entrypoint) == 0) {
		cmd = []string{"true"}
	}
	created, err := d.cli.ContainerCreate(ctx, &container.Config{Image: spec.Base, Cmd: cmd},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return fmt.Errorf("bake %s: create from %s: %w", spec.Ref, spec.Base, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, rerr := d.remove(rctx, created.ID); rerr != nil && err == nil {
			err = fmt.Errorf("bake %s: remove its container: %w", spec.Ref, rerr)
		}
	}()
	if spec.Archive != nil {
		if err := d.cli.CopyToContainer(ctx, created.ID, "/", spec.Archive, container.CopyToContainerOptions{}); err != nil {
			return fmt.Errorf("bake %s: copy files: %w", spec.Ref, err)
		}
	}
	// The engine fills what this config leaves unset from the container's
	// (the base's entrypoint, command and environment survive).
	conf := &container.Config{WorkingDir: spec.WorkDir, Labels: spec.Labels}
	if len(spec.EntrypointPrefix) > 0 {
		conf.Entrypoint = append([]string{}, spec.EntrypointPrefix...)
		if base.Config != nil {
			conf.Entrypoint = append(conf.Entrypoint, base.Config.Entrypoint...)
			conf.Cmd = base.Config.Cmd
		}
	}
	_, err = d.cli.ContainerCommit(ctx, created.ID, container.CommitOptions{Reference: spec.Ref,
		Config:  conf,
		Comment: "mayfly code image, baked " + time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return fmt.Errorf("bake %s: commit: %w", spec.Ref, err)
	}
	return nil
}

// RemoveImages removes images by label, keeping keep and any in use.
func (d *Driver) RemoveImages(ctx context.Context, labels map[string]string, keep string) (int, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	list, err := d.cli.ImageList(ctx, image.ListOptions{Filters: args})
	if err != nil {
		return 0, fmt.Errorf("list images %v: %w", labels, err)
	}
	n := 0
	for _, img := range list {
		skip := false
		for _, tag := range img.RepoTags {
			if tag == keep {
				skip = true
			}
		}
		if skip {
			continue
		}
		// Not forced: an image a running container uses stays, and goes
		// the next time.
		if _, err := d.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{PruneChildren: true}); err == nil {
			n++
		}
	}
	return n, nil
}

// ListImages returns the tags of the images carrying every label in labels.
func (d *Driver) ListImages(ctx context.Context, labels map[string]string) ([]string, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	list, err := d.cli.ImageList(ctx, image.ListOptions{Filters: args})
	if err != nil {
		return nil, fmt.Errorf("list images %v: %w", labels, err)
	}
	var refs []string
	for _, img := range list {
		refs = append(refs, img.RepoTags...)
	}
	return refs, nil
}

// RemoveImage removes ref, not forced: an image a container uses stays.
func (d *Driver) RemoveImage(ctx context.Context, ref string) (bool, error) {
	_, err := d.cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	case cerrdefs.IsConflict(err):
		return false, nil // in use
	}
	return false, fmt.Errorf("remove image %s: %w", ref, err)
}
