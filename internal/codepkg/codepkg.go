// Package codepkg checks uploaded code packages (zips) and turns them into
// the tar stream a container is seeded with. Zips are hostile input: names
// may climb out of the task directory, claim to be absolute, hide symlinks,
// or unpack to far more than they weigh. Check refuses all of that at
// upload; ToTar enforces the same limits again on the bytes it actually
// reads, because a zip's declared sizes can lie.
package codepkg

import (
	"archive/tar"
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// ErrInvalid wraps every reason a package is refused.
var ErrInvalid = errors.New("invalid code package")

// Limits bound what a package may unpack to.
type Limits struct {
	MaxFiles         int   // entries, directories included
	MaxUnpackedBytes int64 // sum of file sizes
}

// DefaultLimits are generous for real programs and small for bombs.
var DefaultLimits = Limits{MaxFiles: 10000, MaxUnpackedBytes: 512 << 20}

// Info is what Check learned about a package.
type Info struct {
	Files         int
	UnpackedBytes int64
	HasRunner     bool // has __runner__.sh at its top level
	// RunnerRuntime is, for a __runner__.sh made by the official
	// IronWorker clients, the runtime whose interpreter its last command
	// starts ("node" for `node hello.js`), or "".
	RunnerRuntime string
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// cleanName returns the slash path of an entry inside the package, or an
// error when it would land outside it.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", invalid("entry name contains a NUL byte")
	}
	n := strings.ReplaceAll(name, "\\", "/")
	if strings.HasPrefix(n, "/") || (len(n) >= 2 && n[1] == ':') {
		return "", invalid("entry %q has an absolute path", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", invalid("entry %q climbs out of the package with '..'", name)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// Check validates a zip of the given size without unpacking it. Preflight
// bounds its directory before archive/zip parses it.
func Check(r io.ReaderAt, size int64, lim Limits) (Info, error) {
	if _, err := Preflight(r, size, lim); err != nil {
		return Info{}, err
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Info{}, invalid("not a readable zip: %v", err)
	}
	var info Info
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return Info{}, err
		}
		mode := f.Mode()
		if mode&fs.ModeSymlink != 0 {
			return Info{}, invalid("entry %q is a symlink; packages may not contain links", f.Name)
		}
		if mode&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeCharDevice) != 0 {
			return Info{}, invalid("entry %q is not a regular file or directory", f.Name)
		}
		info.Files++
		if lim.MaxFiles > 0 && info.Files > lim.MaxFiles {
			return Info{}, invalid("more than %d entries", lim.MaxFiles)
		}
		if !f.FileInfo().IsDir() {
			info.UnpackedBytes += int64(f.UncompressedSize64)
			if f.UncompressedSize64 > 1<<62 || (lim.MaxUnpackedBytes > 0 && info.UnpackedBytes > lim.MaxUnpackedBytes) {
				return Info{}, invalid("unpacks to more than %d bytes", lim.MaxUnpackedBytes)
			}
		}
		if name == "__runner__.sh" {
			info.HasRunner = true
			info.RunnerRuntime = runnerRuntime(f)
		}
	}
	return info, nil
}

// TarOptions say where and as whom the package lands in the container.
type TarOptions struct {
	Dir      string // absolute directory the package unpacks into, e.g. /mnt/task
	UID, GID int
	Limits   Limits
	ModTime  time.Time
}

// TarWriter writes tar entries with the ownership and times of opts.
type TarWriter struct {
	tw   *tar.Writer
	opts TarOptions
	dirs map[string]bool
}

// NewTarWriter starts a tar stream on w.
func NewTarWriter(w io.Writer, opts TarOptions) *TarWriter {
	if opts.ModTime.IsZero() {
		opts.ModTime = time.Now()
	}
	return &TarWriter{tw: tar.NewWriter(w), opts: opts, dirs: map[string]bool{}}
}

// Dir adds a directory (and its parents) owned by the task user.
func (t *TarWriter) Dir(p string) error {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "." || p == "" || t.dirs[p] {
		return nil
	}
	if parent := path.Dir(p); parent != "." {
		if err := t.Dir(parent); err != nil {
			return err
		}
	}
	t.dirs[p] = true
	return t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755,
		Uid: t.opts.UID, Gid: t.opts.GID, ModTime: t.opts.ModTime})
}

// File adds a regular file owned by the task user.
func (t *TarWriter) File(p string, mode int64, data []byte) error {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if err := t.Dir(path.Dir(p)); err != nil {
		return err
	}
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)),
		Uid: t.opts.UID, Gid: t.opts.GID, ModTime: t.opts.ModTime}); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

// Zip unpacks a zip into opts.Dir, enforcing the limits on the bytes read.
func (t *TarWriter) Zip(r io.ReaderAt, size int64) error {
	if _, err := Preflight(r, size, t.opts.Limits); err != nil {
		return err
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return invalid("not a readable zip: %v", err)
	}
	if err := t.Dir(t.opts.Dir); err != nil {
		return err
	}
	var total int64
	files := 0
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return err
		}
		files++
		if t.opts.Limits.MaxFiles > 0 && files > t.opts.Limits.MaxFiles {
			return invalid("more than %d entries", t.opts.Limits.MaxFiles)
		}
		if name == "" {
			continue
		}
		full := path.Join(t.opts.Dir, name)
		mode := f.Mode()
		if mode.IsDir() {
			if err := t.Dir(full); err != nil {
				return err
			}
			continue
		}
		if !mode.IsRegular() {
			return invalid("entry %q is not a regular file or directory", f.Name)
		}
		if err := t.Dir(path.Dir(full)); err != nil {
			return err
		}
		perm := int64(mode.Perm())
		if perm == 0 {
			perm = 0o644 // zips made on some systems carry no modes
		}
		perm |= 0o600
		remaining := int64(-1)
		if t.opts.Limits.MaxUnpackedBytes > 0 {
			remaining = t.opts.Limits.MaxUnpackedBytes - total
		}
		if err := t.zipEntry(f, full, perm, remaining, &total); err != nil {
			return err
		}
	}
	return nil
}

func (t *TarWriter) zipEntry(f *zip.File, full string, perm, remaining int64, total *int64) error {
	declared := int64(f.UncompressedSize64)
	if remaining >= 0 && declared > remaining {
		return invalid("unpacks to more than %d bytes", t.opts.Limits.MaxUnpackedBytes)
	}
	rc, err := f.Open()
	if err != nil {
		return invalid("open entry %q: %v", f.Name, err)
	}
	defer rc.Close()
	// The tar header needs the size before the data, so trust the
	// declared size but read exactly that much and no more: a lying entry
	// fails the checksum in archive/zip or comes up short here.
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(full, "/"), Mode: perm,
		Size: declared, Uid: t.opts.UID, Gid: t.opts.GID, ModTime: t.opts.ModTime}); err != nil {
		return err
	}
	n, err := io.Copy(t.tw, io.LimitReader(rc, declared))
	if err != nil {
		return invalid("read entry %q: %v", f.Name, err)
	}
	if n != declared {
		return invalid("entry %q is shorter than it claims", f.Name)
	}
	// Reading one more byte makes archive/zip verify the CRC and reveals
	// an entry longer than declared.
	var one [1]byte
	if m, err := rc.Read(one[:]); m > 0 || (err != nil && err != io.EOF) {
		return invalid("entry %q does not match its declared size or checksum", f.Name)
	}
	*total += n
	return nil
}

// Close finishes the tar stream.
func (t *TarWriter) Close() error { return t.tw.Close() }
