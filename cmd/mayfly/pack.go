package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// packDir writes a zip of the directory root to w. It keeps file modes, so
// scripts stay executable, and symlinks as symlinks, and it leaves out only
// .git. Anything that would not mean the same once unpacked on a runner
// is refused: symlinks leading outside root, devices, sockets and pipes.
func packDir(root string, w io.Writer) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	// Walk the real directory, so that a root given through a symlink is
	// entered and symlinks inside it compare against real paths.
	top, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	zw := zip.NewWriter(w)
	err = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == top {
			return nil
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // the .git file of a submodule or worktree
		}
		rel, err := filepath.Rel(top, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := zip.FileInfoHeader(info)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		hdr.Name = filepath.ToSlash(rel)

		switch mode := info.Mode(); {
		case mode&fs.ModeSymlink != 0:
			target, err := linkTarget(top, path)
			if err != nil {
				return err
			}
			hdr.Method = zip.Store
			fw, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			_, err = io.WriteString(fw, target)
			return err
		case mode.IsDir():
			// Directories get entries of their own, so empty ones and their
			// modes survive.
			hdr.Name += "/"
			hdr.Method = zip.Store
			_, err := zw.CreateHeader(hdr)
			return err
		case mode.IsRegular():
			hdr.Method = zip.Deflate
			fw, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			return copyFile(fw, path)
		default:
			return fmt.Errorf("%s: cannot pack a %s", path, describeMode(mode))
		}
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	return nil
}

// linkTarget returns what the symlink at path should point to in the zip:
// its own target when that stays inside root, made relative when it was
// absolute, since absolute paths mean nothing where the package is
// unpacked.
func linkTarget(root, path string) (string, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	dest := target
	if !filepath.IsAbs(dest) {
		dest = filepath.Join(dir, dest)
	}
	dest = filepath.Clean(dest)
	// Resolve through every link in between when the target exists, so
	// that a chain through a link leading out is caught too; a dangling
	// link is judged by its text.
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		dest = resolved
	}
	if !within(root, dest) {
		return "", fmt.Errorf("symlink %s points outside the directory, to %s", path, target)
	}
	if !filepath.IsAbs(target) {
		return filepath.ToSlash(target), nil
	}
	rel, err := filepath.Rel(dir, dest)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// isZip reports whether the file starts like a zip: a local file header,
// or the end record of an empty archive.
func isZip(f *os.File) (bool, error) {
	var head [4]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	return n == 4 && (bytes.Equal(head[:], []byte("PK\x03\x04")) || bytes.Equal(head[:], []byte("PK\x05\x06"))), nil
}
