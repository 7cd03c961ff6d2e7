package docker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// copyIn unpacks spec.Archive and then spec.Files at / of the container, in
// one copy: each copy costs the engine a mount and a chroot (tens of
// milliseconds on 20.10), so the two are merged into one tar stream.
//
// The engine keeps the owners in the tar headers (without copyUIDGID), which
// is what lets the archive hand the task directory to the task user.
func (d *Driver) copyIn(ctx context.Context, id string, spec driver.Spec) error {
	var content io.Reader
	switch {
	case spec.Archive == nil && len(spec.Files) == 0:
		return nil
	case len(spec.Files) == 0:
		// Passed as is: the engine also takes compressed tars.
		content = spec.Archive
	default:
		uid, gid := numericUser(spec.User)
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(writeTar(pw, spec.Archive, spec.Files, uid, gid))
		}()
		defer pr.Close()
		content = pr
	}
	err := d.cli.CopyToContainer(ctx, id, "/", content, container.CopyToContainerOptions{})
	if err != nil {
		return fmt.Errorf("copy files into container %s: %w", shortID(id), err)
	}
	return nil
}

// writeTar writes the entries of archive (may be nil, may be gzipped) and
// then files as one tar to w.
func writeTar(w io.Writer, archive io.Reader, files []driver.File, uid, gid int) error {
	tw := tar.NewWriter(w)
	if archive != nil {
		if err := copyArchive(tw, archive); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, f := range files {
		hdr, err := fileHeader(f, uid, gid, now)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return fmt.Errorf("write %s: %w", f.Path, err)
			}
		}
	}
	return tw.Close()
}

func copyArchive(tw *tar.Writer, archive io.Reader) error {
	return driver.WalkArchive(archive, func(hdr *tar.Header, contents io.Reader) error {
		// Let the writer pick a format that can hold the header; the
		// reader's may not be writable as is (GNU sparse, for one).
		hdr.Format = tar.FormatUnknown
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("copy archive entry %s: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, contents); err != nil {
			return fmt.Errorf("copy archive entry %s: %w", hdr.Name, err)
		}
		return nil
	})
}

// fileHeader is the tar header of f, owned by uid:gid.
func fileHeader(f driver.File, uid, gid int, now time.Time) (*tar.Header, error) {
	if !strings.HasPrefix(f.Path, "/") {
		return nil, fmt.Errorf("file %q: path is not absolute", f.Path)
	}
	dir := f.Dir || strings.HasSuffix(f.Path, "/")
	name := strings.TrimPrefix(path.Clean(f.Path), "/")
	if name == "" {
		return nil, fmt.Errorf("file %q: cannot replace /", f.Path)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    f.Mode,
		Uid:     uid,
		Gid:     gid,
		ModTime: now,
	}
	if dir {
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		if hdr.Mode == 0 {
			hdr.Mode = 0o755
		}
		return hdr, nil
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
	if hdr.Mode == 0 {
		hdr.Mode = 0o644
	}
	return hdr, nil
}

// numericUser returns the uid and gid of a "uid[:gid]" user; files are owned
// by root when the user is a name, which only the container could resolve.
// A uid without gid gets gid 0, as the engine does for a uid without a
// passwd entry.
func numericUser(user string) (uid, gid int) {
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return 0, 0
	}
	if g == "" {
		return uid, 0
	}
	gid, err = strconv.Atoi(g)
	if err != nil || gid < 0 {
		return uid, 0
	}
	return uid, gid
}
