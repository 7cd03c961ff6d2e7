// Package stack builds the stack images (the named base images tasks run on)
// from the recipes embedded in the binary. A build needs no registry: the
// build context is the recipe folder plus files taken from the host, which
// come from Debian packages the error messages name, and a recipe that needs
// a whole Debian system gets it from debootstrap and the host's package
// mirror, imported as a base image the Dockerfile starts from.
//
// Every image carries the digest of its build context as a label, so Build
// is idempotent and cheap to call at every start: it rebuilds only when the
// recipe or a host file changed. Base images are tagged by the digest of
// their debootstrap settings, so an unchanged one is never made again.
package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/stacks"
)

// Image labels. LabelDigest is the sha256 of the build context, which is
// deterministic (sorted entries, fixed owners and times).
const (
	LabelStack  = "io.mayfly.stack"
	LabelDigest = "io.mayfly.stack.digest"
)

// Repository is the one image repository of all stacks; the stack name is
// the tag.
const Repository = "mayfly/stack"

// ErrMissingHostFile is wrapped by errors about a host file that a recipe
// needs and that is not there (its Debian package is not installed).
var ErrMissingHostFile = errors.New("host file missing")

// Recipe is a stack's stack.json: what its build needs besides the files of
// its folder.
type Recipe struct {
	Description string `json:"description,omitempty"`
	// Aliases are other names a code may give the stack, such as the
	// language without its version.
	Aliases []string `json:"aliases,omitempty"`
	// Files maps a path in the build context to a file on the host, copied
	// in with its permission bits.
	Files map[string]string `json:"files,omitempty"`
	// DebianPackages are the packages that provide Files, named in errors.
	DebianPackages []string `json:"debian_packages,omitempty"`
	// Debootstrap, when set, makes a base image from Debian packages
	// first; the Dockerfile gets its reference as the build argument
	// BASE (ARG BASE, FROM ${BASE}).
	Debootstrap *Debootstrap `json:"debootstrap,omitempty"`
}

// Names returns the names of all stacks the binary carries, sorted.
func Names() []string {
	return names(stacks.FS())
}

func names(fsys fs.FS) []string {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), "stack.json")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Image returns the image reference of stack name.
func Image(name string) string {
	return Repository + ":" + name
}

// loadRecipe reads and checks the recipe of stack name.
func loadRecipe(fsys fs.FS, name string) (Recipe, error) {
	var r Recipe
	if !slices.Contains(names(fsys), name) {
		return r, fmt.Errorf("unknown stack %q (known: %s)", name, strings.Join(names(fsys), ", "))
	}
	data, err := fs.ReadFile(fsys, path.Join(name, "stack.json"))
	if err != nil {
		return r, fmt.Errorf("read recipe of stack %s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// A misspelt key would otherwise silently build the wrong image.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("parse %s/stack.json: %w", name, err)
	}
	for ctxPath := range r.Files {
		if !fs.ValidPath(ctxPath) || ctxPath == "." {
			return r, fmt.Errorf("%s/stack.json: invalid context path %q", name, ctxPath)
		}
	}
	for _, a := range r.Aliases {
		if !validName.MatchString(a) || a == name {
			return r, fmt.Errorf("%s/stack.json: invalid alias %q", name, a)
		}
	}
	if r.Debootstrap != nil {
		if err := r.Debootstrap.check(); err != nil {
			return r, fmt.Errorf("%s/stack.json: %w", name, err)
		}
	}
	return r, nil
}

// validName is what a stack name or alias may look like: it ends up as an
// image tag.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Resolve returns the stack that name stands for: the name itself when it
// is a stack, else the stack it is an alias of. ok is false for a name that
// is neither.
func Resolve(name string) (stack string, ok bool) {
	return resolve(stacks.FS(), name)
}

func resolve(fsys fs.FS, name string) (string, bool) {
	all := names(fsys)
	if slices.Contains(all, name) {
		return name, true
	}
	for _, n := range all {
		r, err := loadRecipe(fsys, n)
		if err == nil && slices.Contains(r.Aliases, name) {
			return n, true
		}
	}
	return "", false
}

// Aliases maps every alias to its stack.
func Aliases() map[string]string {
	return aliases(stacks.FS())
}

func aliases(fsys fs.FS) map[string]string {
	out := map[string]string{}
	for _, n := range names(fsys) {
		r, err := loadRecipe(fsys, n)
		if err != nil {
			continue
		}
		for _, a := range r.Aliases {
			out[a] = n
		}
	}
	return out
}

// contextEpoch is the time stamp of every entry of a build context, so the
// same inputs always give the same bytes and the same digest.
var contextEpoch = time.Unix(0, 0).UTC()

// buildContext returns the build context of stack name as a tar, and its
// digest: the recipe folder's files plus the host files the recipe lists,
// read under hostRoot ("/" in production).
func buildContext(fsys fs.FS, hostRoot, name string) (tarball []byte, digest string, err error) {
	r, err := loadRecipe(fsys, name)
	if err != nil {
		return nil, "", err
	}
	type entry struct {
		mode int64
		data []byte
	}
	entries := map[string]entry{}
	err = fs.WalkDir(fsys, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		entries[strings.TrimPrefix(p, name+"/")] = entry{mode: 0o644, data: data}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("read recipe folder of stack %s: %w", name, err)
	}
	for ctxPath, hostPath := range r.Files {
		if _, dup := entries[ctxPath]; dup {
			return nil, "", fmt.Errorf("stack %s: host file %s would replace recipe file %s", name, hostPath, ctxPath)
		}
		full := path.Join(hostRoot, hostPath)
		data, err := os.ReadFile(full)
		if errors.Is(err, fs.ErrNotExist) {
			hint := ""
			if len(r.DebianPackages) > 0 {
				hint = fmt.Sprintf("; install the Debian package(s) %s (apt-get install %s)",
					strings.Join(r.DebianPackages, ", "), strings.Join(r.DebianPackages, " "))
			}
			return nil, "", fmt.Errorf("stack %s needs %s: %w%s", name, hostPath, ErrMissingHostFile, hint)
		}
		if err != nil {
			return nil, "", fmt.Errorf("stack %s: read host file %s: %w", name, hostPath, err)
		}
		fi, err := os.Stat(full)
		if err != nil {
			return nil, "", fmt.Errorf("stack %s: stat host file %s: %w", name, hostPath, err)
		}
		entries[ctxPath] = entry{mode: int64(fi.Mode().Perm()), data: data}
	}

	// Directories get entries of their own so the daemon does not invent
	// their modes; sorting puts every parent before its children.
	for _, p := range slices.Collect(maps.Keys(entries)) {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			entries[dir+"/"] = entry{mode: 0o755}
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range slices.Sorted(maps.Keys(entries)) {
		e := entries[p]
		hdr := &tar.Header{
			Name:     p,
			Typeflag: tar.TypeReg,
			Mode:     e.mode,
			Size:     int64(len(e.data)),
			ModTime:  contextEpoch,
			Format:   tar.FormatPAX,
		}
		if strings.HasSuffix(p, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", fmt.Errorf("build context of stack %s: %w", name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, "", fmt.Errorf("build context of stack %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", fmt.Errorf("build context of stack %s: %w", name, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Build builds the image of stack name (or alias) unless an image with the
// same build context digest is already tagged (or force is set), and
// returns its reference and whether it built. A recipe with a debootstrap
// base makes that base first unless it exists; force makes it again too,
// with fresh packages. Build progress goes to out (may be nil).
func Build(ctx context.Context, name string, out io.Writer, force bool) (image string, built bool, err error) {
	return buildFrom(ctx, stacks.FS(), "/", name, out, force)
}

// buildFrom is Build with the recipes in fsys and the host files under
// hostRoot.
func buildFrom(ctx context.Context, fsys fs.FS, hostRoot, name string, out io.Writer, force bool) (string, bool, error) {
	if resolved, ok := resolve(fsys, name); ok {
		name = resolved
	}
	r, err := loadRecipe(fsys, name)
	if err != nil {
		return "", false, err
	}
	tarball, digest, err := buildContext(fsys, hostRoot, name)
	if err != nil {
		return "", false, err
	}
	e, err := connect(ctx)
	if err != nil {
		return "", false, err
	}
	defer e.close()
	unlock, err := lockBuild(ctx, name)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	ref := Image(name)
	current, err := e.digestOf(ctx, ref)
	if err != nil {
		return "", false, err
	}
	if !force && current.digest == digest {
		return ref, false, nil
	}
	if out == nil {
		out = io.Discard
	}
	labels := map[string]string{LabelStack: name, LabelDigest: digest}
	var args map[string]*string
	base := ""
	if r.Debootstrap != nil {
		if base, err = ensureBase(ctx, e, name, *r.Debootstrap, out, force); err != nil {
			return "", false, err
		}
		args = map[string]*string{"BASE": &base}
	}
	// force also skips the build cache: whoever forces a build wants it
	// done again.
	if err := e.build(ctx, tarball, ref, labels, args, force, out); err != nil {
		return "", false, fmt.Errorf("build stack %s: %w", name, err)
	}
	if base != "" {
		e.removeOtherBases(ctx, name, base)
	}
	if current.id != "" {
		// The previous image is untagged now, unless the build made the
		// same one again; drop it so rebuilds do not pile up.
		now, err := e.digestOf(ctx, ref)
		if err != nil {
			return "", false, err
		}
		if now.id != current.id {
			e.removeUnused(ctx, current.id)
		}
	}
	return ref, true, nil
}

// Installed returns the names of the stacks whose image exists locally,
// sorted.
func Installed(ctx context.Context) ([]string, error) {
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer e.close()
	return e.installed(ctx)
}

// Status is what `mayfly stack ls` shows of one stack.
type Status struct {
	Name        string
	Aliases     []string
	Description string
	Image       string
	// Built is whether Image exists here; Size is its size in bytes.
	Built bool
	Size  int64
}

// List returns every stack the binary carries with whether it is built
// here, sorted by name.
func List(ctx context.Context) ([]Status, error) {
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	defer e.close()
	installed, err := e.installed(ctx)
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, n := range Names() {
		r, err := loadRecipe(stacks.FS(), n)
		if err != nil {
			return nil, err
		}
		st := Status{Name: n, Aliases: r.Aliases, Description: r.Description, Image: Image(n), Built: slices.Contains(installed, n)}
		if st.Built {
			if st.Size, err = e.imageSize(ctx, st.Image); err != nil {
				return nil, err
			}
		}
		out = append(out, st)
	}
	return out, nil
}
