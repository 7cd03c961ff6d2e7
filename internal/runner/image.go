package runner

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/codepkg"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Code images: a code revision's package is baked onto its stack (or image)
// once per runner, as "mayfly/code:KEY" where KEY hashes the base image's
// id, the package checksum, the task user and the project. A task start is then a plain
// container start with nothing copied over the engine API.
//
// The package is baked at CodeDir, not at the task directory: a task's root
// file system is read-only, and its task directory is a size-capped tmpfs
// mounted over the image, which the engine cannot fill before the start.
// The container fills it itself, with one cp, before the task's command
// (fillTaskDir). Rebuilding a stack changes its id,
// so the next task bakes anew; images of a code's other revisions are
// removed once a new one is baked.
const (
	codeImageRepo  = "mayfly/code"
	labelCodeImage = "io.mayfly.code-image"
	labelCodeID    = "io.mayfly.code-id"
	// LabelProject marks code images with their project, so whoever
	// removes a project (or a test its own) can remove its images.
	LabelProject    = "io.mayfly.project"
	codeImageFormat = "2" // part of the key: bump when the baked layout changes
	// baseIDTTL bounds how stale the id of a base image may be: a rebuilt
	// stack is picked up this long after, without an engine round trip
	// on every task.
	baseIDTTL = 10 * time.Second
)

type baseID struct {
	id string
	at time.Time
}

// prepared is what a task needs to start.
type prepared struct {
	image     string
	archive   func() (*io.PipeReader, <-chan error) // nil when the image holds the code
	hasRunner bool
}

// prepare resolves the task's base image, fetches its package and bakes
// (or finds) its code image.
func (r *Runner) prepare(ctx context.Context, job wire.Job) (prepared, error) {
	base := job.Code.Image
	if base == "" {
		base = r.cfg.StackImage(job.Code.Stack)
	} else if err := r.policy.Check(base); err != nil {
		return prepared{}, fmt.Errorf("Refused by runner %s: %v", r.cfg.ID, err)
	}
	var zipPath string
	var p prepared
	if job.Code.PackageSHA256 != "" {
		var err error
		if zipPath, err = r.cache.path(ctx, job.Code); err != nil {
			return p, fmt.Errorf("Could not fetch the code package: %v", err)
		}
		if p.hasRunner, err = r.hasRunner(zipPath, job.Code.PackageSHA256); err != nil {
			return p, fmt.Errorf("Code package unreadable: %v", err)
		}
	}
	uid, gid := userIDs(r.cfg.User)
	archive := func() (*io.PipeReader, <-chan error) { return codeArchive(zipPath, uid, gid) }

	baker, ok := r.driver.(driver.Baker)
	if !ok {
		if err := r.checkImage(ctx, base, job); err != nil {
			return p, err
		}
		p.image, p.archive = base, archive
		return p, nil
	}
	id, err := r.baseID(ctx, baker, base)
	if err != nil {
		return p, err
	}
	if id == "" {
		return p, missingImage(base, job, r.cfg.ID)
	}
	// The project is part of the key: projects never share an image, so
	// removing one project's images cannot pull one from under another.
	sum := sha256.Sum256([]byte(id + "\n" + job.Code.PackageSHA256 + "\n" + r.cfg.User + "\n" + job.ProjectID + "\n" + codeImageFormat))
	ref := codeImageRepo + ":" + hex.EncodeToString(sum[:12])
	r.markImageUsed(ref)
	// Known images are looked up again after a while, in case someone
	// removed one.
	if at, ok := r.baked.Load(ref); ok && time.Since(at.(time.Time)) < baseIDTTL {
		p.image = ref
		return p, nil
	}
	_, err, _ = r.bakes.Do(ref, func() (any, error) {
		have, err := baker.ImageID(ctx, ref)
		if err != nil || have != "" {
			return nil, err
		}
		pr, werr := archive()
		spec := driver.BakeSpec{Ref: ref, Base: base, Archive: pr, WorkDir: TaskDir,
			Labels: map[string]string{labelCodeImage: "true", labelCodeID: job.CodeID, LabelProject: job.ProjectID}}
		if job.Code.Image != "" && job.Code.PackageSHA256 != "" {
			// An image code that runs its own command still finds its
			// package in the task directory.
			spec.EntrypointPrefix = fillTaskDir
		}
		err = baker.Bake(ctx, spec)
		pr.CloseWithError(errArchiveUnread)
		if perr := <-werr; perr != nil && !errors.Is(perr, errArchiveUnread) {
			return nil, fmt.Errorf("Could not unpack the code package: %v", perr)
		}
		if err != nil {
			return nil, fmt.Errorf("Could not prepare the code image: %v", err)
		}
		r.log.Info("baked code image", "code", job.CodeName, "rev", job.Code.Rev, "image", ref)
		r.wg.Go(func() { r.dropOldImages(baker, job.CodeID, ref) })
		return nil, nil
	})
	if err != nil {
		return p, err
	}
	r.baked.Store(ref, time.Now())
	p.image = ref
	return p, nil
}

func (r *Runner) baseID(ctx context.Context, baker driver.Baker, ref string) (string, error) {
	if v, ok := r.baseIDs.Load(ref); ok && time.Since(v.(baseID).at) < baseIDTTL {
		return v.(baseID).id, nil
	}
	id, err := baker.ImageID(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("Could not check image %s: %v", ref, err)
	}
	if id != "" {
		r.baseIDs.Store(ref, baseID{id: id, at: time.Now()})
	}
	return id, nil
}

func (r *Runner) dropOldImages(baker driver.Baker, codeID, keep string) {
	ctx, cancel := context.WithTimeout(r.hardCtx, time.Minute)
	defer cancel()
	n, err := baker.RemoveImages(ctx, map[string]string{labelCodeID: codeID}, keep)
	if err != nil {
		r.log.Warn("could not remove old code images", "code_id", codeID, "err", err)
		return
	}
	if n > 0 {
		r.log.Info("removed old code images", "code_id", codeID, "count", n)
		r.baked.Range(func(k, _ any) bool {
			if k != keep {
				r.baked.Delete(k)
			}
			return true
		})
	}
}

// hasRunner tells whether a package has __runner__.sh, reading each
// package once.
func (r *Runner) hasRunner(zipPath, sum string) (bool, error) {
	if v, ok := r.runners.Load(sum); ok {
		return v.(bool), nil
	}
	has, err := zipHas(zipPath, "__runner__.sh")
	if err == nil {
		r.runners.Store(sum, has)
	}
	return has, err
}

// codeArchive streams the code directory with the package unpacked in it
// as a tar; the channel carries the writer's error once it is done.
func codeArchive(zipPath string, uid, gid int) (*io.PipeReader, <-chan error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := func() error {
			tw := codepkg.NewTarWriter(pw, codepkg.TarOptions{Dir: CodeDir, UID: uid, GID: gid, Limits: codepkg.DefaultLimits})
			if err := tw.Dir(CodeDir); err != nil {
				return err
			}
			if zipPath != "" {
				f, err := os.Open(zipPath)
				if err != nil {
					return err
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return err
				}
				if err := tw.Zip(f, st.Size()); err != nil {
					return err
				}
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
		errc <- err
	}()
	return pr, errc
}

func zipHas(p, name string) (bool, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return false, err
	}
	defer zr.Close()
	for _, f := range zr.File {
		if path.Clean(strings.ReplaceAll(f.Name, "\\", "/")) == name {
			return true, nil
		}
	}
	return false, nil
}
