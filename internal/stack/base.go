package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// Base image labels and repository. A base is the bare Debian system a
// stack's Dockerfile starts from; its tag carries the digest of what made
// it, so finding the tag is knowing it is current.
const (
	BaseRepository  = "mayfly/base"
	LabelBase       = "io.mayfly.base"
	LabelBaseDigest = "io.mayfly.base.digest"
)

// MirrorEnv names a Debian mirror URL that wins over the host's apt
// sources, for hosts whose sources do not lead to the suite.
const MirrorEnv = "MAYFLY_DEBIAN_MIRROR"

// ErrMissingTool is wrapped by errors about a program a build needs that
// is not installed; the message names the Debian package.
var ErrMissingTool = errors.New("tool missing")

// ErrNeedsRoot is wrapped when a base image must be made and the process is
// not root: debootstrap installs packages into a chroot.
var ErrNeedsRoot = errors.New("needs root")

// Debootstrap is the recipe of a base image made from Debian packages.
type Debootstrap struct {
	// Suite is the Debian release, such as bookworm.
	Suite string `json:"suite"`
	// Variant is debootstrap's variant; minbase (the default) is the
	// smallest system that still has dpkg and apt.
	Variant string `json:"variant,omitempty"`
	// Include are the packages installed on top, with their dependencies.
	Include []string `json:"include,omitempty"`
}

var (
	debianName  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debianSuite = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

func (d Debootstrap) check() error {
	if !debianSuite.MatchString(d.Suite) {
		return fmt.Errorf("debootstrap: invalid suite %q", d.Suite)
	}
	if !slices.Contains([]string{"", "minbase", "buildd"}, d.Variant) {
		return fmt.Errorf("debootstrap: unsupported variant %q (minbase or buildd)", d.Variant)
	}
	for _, p := range d.Include {
		if !debianName.MatchString(p) {
			return fmt.Errorf("debootstrap: invalid package name %q", p)
		}
	}
	return nil
}

func (d Debootstrap) variant() string {
	if d.Variant == "" {
		return "minbase"
	}
	return d.Variant
}

// slimVersion changes whenever slimRootfs removes something else, so that
// bases made under the old rules are made again.
const slimVersion = 1

// baseDigest is the sha256 of everything that shapes a base image: the
// debootstrap settings, the slimming rules and the architecture. The mirror
// is left out: any mirror serves the same suite.
func baseDigest(d Debootstrap) string {
	include := slices.Clone(d.Include)
	slices.Sort(include)
	data, _ := json.Marshal(struct {
		Suite   string   `json:"suite"`
		Variant string   `json:"variant"`
		Include []string `json:"include"`
		Slim    int      `json:"slim"`
		Arch    string   `json:"arch"`
	}{d.Suite, d.variant(), include, slimVersion, runtime.GOARCH})
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// BaseImage returns the reference of the base image of stack name made
// from d.
func BaseImage(name string, d Debootstrap) string {
	return BaseRepository + ":" + name + "-" + strings.TrimPrefix(baseDigest(d), "sha256:")[:16]
}

// ensureBase returns the base image of stack name, making it unless it
// exists (or force is set).
func ensureBase(ctx context.Context, e engine, name string, d Debootstrap, out io.Writer, force bool) (string, error) {
	ref := BaseImage(name, d)
	if !force {
		current, err := e.digestOf(ctx, ref)
		if err != nil {
			return "", err
		}
		if current.id != "" {
			fmt.Fprintf(out, "base %s: %s exists, debootstrap skipped\n", name, ref)
			return ref, nil
		}
	}
	debootstrap, err := findDebootstrap()
	if err != nil {
		return "", fmt.Errorf("stack %s needs a base image made by debootstrap: %w", name, err)
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("stack %s: making its base image with debootstrap %w: run the build as root", name, ErrNeedsRoot)
	}
	mirror, err := debianMirror("/", d.Suite)
	if err != nil {
		return "", fmt.Errorf("stack %s: %w", name, err)
	}
	dir, err := os.MkdirTemp("", "mayfly-base-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("stack %s: directory for the base system: %w", name, err)
	}
	defer func() {
		if err := removeTree(dir); err != nil {
			fmt.Fprintf(out, "base %s: %v\n", name, err)
		}
	}()
	rootfs := filepath.Join(dir, "rootfs")

	args := []string{"--variant=" + d.variant()}
	if len(d.Include) > 0 {
		args = append(args, "--include="+strings.Join(d.Include, ","))
	}
	args = append(args, d.Suite, rootfs, mirror)
	fmt.Fprintf(out, "base %s: debootstrap %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, debootstrap, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	ownProcessGroup(cmd)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("stack %s: debootstrap %s from %s: %w", name, d.Suite, mirror, err)
	}

	before, err := treeSize(rootfs)
	if err != nil {
		return "", fmt.Errorf("stack %s: %w", name, err)
	}
	if err := slimRootfs(rootfs); err != nil {
		return "", fmt.Errorf("stack %s: slim the base system: %w", name, err)
	}
	after, err := treeSize(rootfs)
	if err != nil {
		return "", fmt.Errorf("stack %s: %w", name, err)
	}
	fmt.Fprintf(out, "base %s: %d MB from debootstrap, %d MB without docs, man pages, locales, apt lists and caches\n",
		name, before>>20, after>>20)

	labels := map[string]string{LabelBase: name, LabelBaseDigest: baseDigest(d)}
	if err := e.importRootfs(ctx, rootfs, ref, labels); err != nil {
		return "", fmt.Errorf("stack %s: import the base system: %w", name, err)
	}
	fmt.Fprintf(out, "base %s: imported as %s\n", name, ref)
	return ref, nil
}

// findDebootstrap looks in PATH and in the sbin folders, which a non-root
// PATH often lacks.
func findDebootstrap() (string, error) {
	if p, err := exec.LookPath("debootstrap"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/debootstrap", "/sbin/debootstrap"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("debootstrap not found: %w; install the Debian packages debootstrap and debian-archive-keyring (apt-get install debootstrap debian-archive-keyring)", ErrMissingTool)
}

// debianMirror returns the mirror to debootstrap suite from: MirrorEnv if
// set, else the first apt source of the host (under root) that serves the
// suite, else the first that serves a plain Debian release, since a mirror
// holds every release.
func debianMirror(root, suite string) (string, error) {
	if m := strings.TrimSpace(os.Getenv(MirrorEnv)); m != "" {
		return m, nil
	}
	sources, err := aptSources(root)
	if err != nil {
		return "", err
	}
	for _, s := range sources {
		if slices.Contains(s.suites, suite) {
			return s.uri, nil
		}
	}
	for _, s := range sources {
		for _, st := range s.suites {
			if debianSuite.MatchString(st) && !strings.Contains(st, "-") && strings.Contains(s.uri, "/debian") && !strings.Contains(s.uri, "security") {
				return s.uri, nil
			}
		}
	}
	return "", fmt.Errorf("no Debian mirror for %s in %s: add one to the apt sources or set %s",
		suite, filepath.Join(root, "etc/apt/sources.list*"), MirrorEnv)
}

type aptSource struct {
	uri    string
	suites []string
}

// aptSources reads the "deb" entries of sources.list, sources.list.d/*.list
// (one-line format) and sources.list.d/*.sources (deb822 format).
func aptSources(root string) ([]aptSource, error) {
	var out []aptSource
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	for _, pattern := range []string{"etc/apt/sources.list.d/*.list", "etc/apt/sources.list.d/*.sources"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return nil, fmt.Errorf("list apt sources: %w", err)
		}
		slices.Sort(m)
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read apt sources: %w", err)
		}
		if strings.HasSuffix(f, ".sources") {
			out = append(out, parseDeb822(data)...)
		} else {
			out = append(out, parseOneLine(data)...)
		}
	}
	return out, nil
}

func usableURI(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "file:/")
}

func parseOneLine(data []byte) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options: [arch=amd64 signed-by=...], possibly with spaces.
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && usableURI(f[0]) {
			out = append(out, aptSource{uri: f[0], suites: []string{f[1]}})
		}
	}
	return out
}

func parseDeb822(data []byte) []aptSource {
	var out []aptSource
	for _, stanza := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		suites := strings.Fields(fields["suites"])
		for _, u := range strings.Fields(fields["uris"]) {
			if usableURI(u) {
				out = append(out, aptSource{uri: u, suites: suites})
			}
		}
	}
	return out
}

// treeSize sums the sizes of the files under dir, links not followed.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}

// slimExclude keeps what slimRootfs removed from coming back when a derived
// image installs more packages; the same rules the slim Debian images use.
const slimExclude = `# Set by the mayfly stack build: no documentation in task images.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
`

// slimRootfs removes from a fresh debootstrap what no task needs: docs (the
// copyright files stay), man and info pages, translations, apt's package
// lists and downloaded packages, logs, and the host's hostname and resolver
// settings that debootstrap copies in (the engine provides its own). All
// work goes through an os.Root, so no symlink in the tree can lead out of
// it.
func slimRootfs(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// emptyDir removes what is in dir except the names in keep.
	// realDir reports whether dir is a folder and not a link to one.
	realDir := func(dir string) (bool, error) {
		fi, err := root.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil && fi.IsDir(), err
	}
	emptyDir := func(dir string, keep ...string) error {
		if ok, err := realDir(dir); !ok {
			return err
		}
		entries, err := fs.ReadDir(root.FS(), dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if slices.Contains(keep, e.Name()) {
				continue
			}
			if err := root.RemoveAll(path.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []string{
		"usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian", "usr/share/linda", "tmp", "var/tmp",
	} {
		if err := emptyDir(d); err != nil {
			return err
		}
	}
	if err := emptyDir("usr/share/locale", "locale.alias"); err != nil {
		return err
	}
	// apt's own folders stay, so that apt works in a derived image.
	if err := emptyDir("var/lib/apt/lists", "partial", "lock"); err != nil {
		return err
	}
	// Logs: the files go, the folders their programs expect stay.
	if ok, err := realDir("var/log"); err != nil {
		return err
	} else if ok {
		err := fs.WalkDir(root.FS(), "var/log", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			return root.Remove(p)
		})
		if err != nil {
			return err
		}
	}
	var docs []fs.DirEntry
	if ok, err := realDir("usr/share/doc"); err != nil {
		return err
	} else if ok {
		if docs, err = fs.ReadDir(root.FS(), "usr/share/doc"); err != nil {
			return err
		}
	}
	for _, e := range docs {
		// Links (doc folders shared between packages) are left alone.
		if e.IsDir() {
			if err := emptyDir(path.Join("usr/share/doc", e.Name()), "copyright"); err != nil {
				return err
			}
		}
	}
	for _, pattern := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/dpkg/*-old", "var/cache/debconf/*-old", "var/cache/ldconfig/aux-cache"} {
		matches, err := fs.Glob(root.FS(), pattern)
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := root.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"etc/hostname", "etc/resolv.conf"} {
		if err := root.RemoveAll(f); err != nil {
			return err
		}
		if err := root.WriteFile(f, nil, 0o644); err != nil {
			return err
		}
	}
	if err := root.MkdirAll("etc/dpkg/dpkg.cfg.d", 0o755); err != nil {
		return err
	}
	return root.WriteFile("etc/dpkg/dpkg.cfg.d/mayfly-slim", []byte(slimExclude), 0o644)
}

// removeTree removes a debootstrap work folder. Anything still mounted in
// it (debootstrap mounts proc and sys in the chroot and may be stopped
// before it unmounts them) is unmounted first, and if that fails the folder
// is left alone: removing through a mount would reach the host's files.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return fmt.Errorf("leaving %s in place: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
