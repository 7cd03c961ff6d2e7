// Package stack builds the stack images (the named base images tasks run on)
// from the recipes embedded in the binary. A build needs no registry: the
// build context is the recipe folder plus files taken from the host, which
// come from Debian packages the error messages name.
//
// Every image carries the digest of its build context as a label, so Build
// is idempotent and cheap to call at every start: it rebuilds only when the
// recipe or a host file changed.
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
	// Files maps a path in the build context to a file on the host, copied
	// in with its permission bits.
	Files map[string]string `json:"files,omitempty"`
	// DebianPackages are the packages that provide Files, named in errors.
	DebianPackages []string `json:"debian_packages,omitempty"`
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
	return r, nil
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

// Build builds the image of stack name unless an image with the same build
// context digest is already tagged (or force is set), and returns its
// reference and whether it built. Build progress goes to out (may be nil).
func Build(ctx context.Context, name string, out io.Writer, force bool) (image string, built bool, err error) {
	return buildFrom(ctx, stacks.FS(), "/", name, out, force)
}

// buildFrom is Build with the recipes in fsys and the host files under
// hostRoot.
func buildFrom(ctx context.Context, fsys fs.FS, hostRoot, name string, out io.Writer, force bool) (string, bool, error) {
	tarball, digest, err := buildContext(fsys, hostRoot, name)
	if err != nil {
		return "", false, err
	}
	e, err := connect(ctx)
	if err != nil {
		return "", false, err
	}
	defer e.close()
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
	// force also skips the build cache: whoever forces a build wants it
	// done again.
	if err := e.build(ctx, bytes.NewReader(tarball), ref, labels, force, out); err != nil {
		return "", false, fmt.Errorf("build stack %s: %w", name, err)
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
