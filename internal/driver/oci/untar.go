package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// untar unpacks the tar stream r (gzipped or not) into dir, keeping owners
// and modes. Every path is resolved inside dir (os.Root): an archive's
// symbolic links or "../" cannot reach the host, whoever wrote it.
//
// below, when set, is the root file system the result will lie on as an
// overlay layer: a parent directory the archive does not name takes its
// owner and mode from there, so the layer does not change what the base
// says of /mnt, say. Without below, such parents are root's with mode 0755.
func untar(r io.Reader, dir, below string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	defer root.Close()
	var under *os.Root
	if below != "" {
		if under, err = os.OpenRoot(below); err != nil {
			return fmt.Errorf("unpack above %s: %w", below, err)
		}
		defer under.Close()
	}
	u := &unpacker{root: root, below: under}

	return driver.WalkArchive(r, func(hdr *tar.Header, contents io.Reader) error {
		return u.entry(hdr, contents)
	})
}

type unpacker struct {
	root  *os.Root
	below *os.Root
}

// cleanName is hdr's name relative to the root, "" for the root itself.
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func fileMode(hdr *tar.Header) fs.FileMode {
	m := fs.FileMode(hdr.Mode & 0o777)
	if hdr.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) error {
	name := cleanName(hdr.Name)
	if name == "" {
		return nil // the root's own entry: the root stays as it is
	}
	if err := u.parents(name); err != nil {
		return err
	}
	mode := fileMode(hdr)
	wrap := func(err error) error { return fmt.Errorf("unpack %s: %w", hdr.Name, err) }
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := u.root.Lstat(name); err == nil && !fi.IsDir() {
			if err := u.root.Remove(name); err != nil {
				return wrap(err)
			}
		}
		if err := u.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return wrap(err)
		}
		if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return wrap(err)
		}
		return wrap0(u.root.Chmod(name, mode), wrap)
	case tar.TypeReg: // the reader reports old-style regular files (TypeRegA) as TypeReg
		if err := u.clear(name); err != nil {
			return wrap(err)
		}
		f, err := u.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return wrap(err)
		}
		_, err = io.Copy(f, body)
		if err == nil {
			err = f.Chown(hdr.Uid, hdr.Gid)
		}
		if err == nil {
			// After the chown, which clears set-id bits.
			err = f.Chmod(mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && !hdr.ModTime.IsZero() {
			err = u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		}
		return wrap0(err, wrap)
	case tar.TypeSymlink:
		if err := u.clear(name); err != nil {
			return wrap(err)
		}
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return wrap(err)
		}
		return wrap0(u.root.Lchown(name, hdr.Uid, hdr.Gid), wrap)
	case tar.TypeLink:
		if err := u.clear(name); err != nil {
			return wrap(err)
		}
		return wrap0(u.root.Link(cleanName(hdr.Linkname), name), wrap)
	default:
		// Devices and fifos: the runtime makes /dev; a stack needs no
		// others.
		return nil
	}
}

func wrap0(err error, wrap func(error) error) error {
	if err == nil {
		return nil
	}
	return wrap(err)
}

// clear removes what is at name unless it is a directory with content.
func (u *unpacker) clear(name string) error {
	err := u.root.Remove(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// parents makes the missing parent directories of name.
func (u *unpacker) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if fi, err := u.root.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	var p string
	for _, part := range strings.Split(dir, "/") {
		p = path.Join(p, part)
		if _, err := u.root.Lstat(p); err == nil {
			// A symbolic link is followed when the entry is made, and
			// refused if it leads out of the root.
			continue
		}
		mode, uid, gid := fs.FileMode(0o755), 0, 0
		if u.below != nil {
			if fi, err := u.below.Stat(p); err == nil && fi.IsDir() {
				mode = fi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
				if st, ok := fi.Sys().(*unix.Stat_t); ok {
					uid, gid = int(st.Uid), int(st.Gid)
				}
			}
		}
		if err := u.root.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("unpack: make %s: %w", p, err)
		}
		if err := u.root.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("unpack: make %s: %w", p, err)
		}
		if err := u.root.Chmod(p, mode); err != nil {
			return fmt.Errorf("unpack: make %s: %w", p, err)
		}
	}
	return nil
}

// filesTar writes files as a tar, owned by uid:gid.
func filesTar(files []driver.File, uid, gid int) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("file %q: path is not absolute", f.Path)
		}
		name := cleanName(f.Path)
		if name == "" {
			return nil, fmt.Errorf("file %q: cannot replace /", f.Path)
		}
		hdr := &tar.Header{Name: name, Mode: f.Mode, Uid: uid, Gid: gid, ModTime: now}
		if f.Dir || strings.HasSuffix(f.Path, "/") {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	return &buf, tw.Close()
}

// syncDir flushes the file system holding dir.
func syncDir(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Syncfs(int(f.Fd()))
}
