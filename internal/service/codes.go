package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/codepkg"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/imagepolicy"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

var codeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-/ ]{0,127}$`)

// runtimeStacks maps a runtime to the stack it runs on when none is named.
var runtimeStacks = map[string]string{
	"sh":     "busybox",
	"":       "busybox",
	"binary": "binary",
	"python": "python-3.11",
	"node":   "node-18",
	"ruby":   "ruby-3.1",
	"php":    "php-8.2",
}

// unset reports IronWorker's "not given" markers.
func unset(p *int) bool { return p == nil || *p <= -1000 }

// UploadCode stores a new revision of a code. zip may be nil for image
// codes, and for a new revision of an existing code that keeps its package
// (see inheritRevision).
func (s *Service) UploadCode(ctx context.Context, projectID string, up wire.CodeUpload, zip io.Reader) (store.Code, error) {
	up.Name = strings.TrimSpace(up.Name)
	if up.Name == "" && up.Image != "" {
		// The Ruby gem's codes.register may leave the name out; ironcli
		// names an image code after its image.
		up.Name = imageName(up.Image)
	}
	if up.Name == "" {
		return store.Code{}, errorf(ErrInvalid, "Code name is required")
	}
	if !codeName.MatchString(up.Name) {
		return store.Code{}, errorf(ErrInvalid, "Invalid code name %q: use letters, digits, '.', '_', '-', '/' and spaces, at most 128", up.Name)
	}
	rev := store.CodeRevision{
		ID: id.New(), CodeID: id.New(), ProjectID: projectID, Name: up.Name,
		Runtime: up.Runtime, FileName: up.FileName, Stack: up.Stack, Image: up.Image,
		Command: up.Command, Config: up.Config, EnvVars: up.EnvVars, CreatedAt: s.now(),
	}
	if zip == nil && rev.Image == "" {
		if err := s.inheritRevision(ctx, &rev, up); err != nil {
			return store.Code{}, err
		}
	}
	if !unset(up.MaxConcurrency) {
		if *up.MaxConcurrency < 0 {
			return store.Code{}, errorf(ErrInvalid, "max_concurrency must be 0 (no limit) or more")
		}
		rev.MaxConcurrency = *up.MaxConcurrency
	}
	if !unset(up.Retries) {
		if *up.Retries < 0 || *up.Retries > 100 {
			return store.Code{}, errorf(ErrInvalid, "retries must be between 0 and 100")
		}
		rev.Retries = *up.Retries
	}
	if !unset(up.RetriesDelay) {
		if *up.RetriesDelay < 0 {
			return store.Code{}, errorf(ErrInvalid, "retries_delay must not be negative")
		}
		rev.RetriesDelay = *up.RetriesDelay
	}
	if !unset(up.DefaultPriority) {
		if *up.DefaultPriority < 0 || *up.DefaultPriority > 2 {
			return store.Code{}, errorf(ErrInvalid, "default_priority must be 0, 1 or 2")
		}
		rev.DefaultPriority = *up.DefaultPriority
	}
	switch up.RetriesBackoff {
	case "":
	case "fixed":
		rev.RetriesBackoff = ""
	case "exponential":
		rev.RetriesBackoff = up.RetriesBackoff
	default:
		return store.Code{}, errorf(ErrInvalid, "retries_backoff must be \"fixed\" or \"exponential\" (got %q)", up.RetriesBackoff)
	}
	for k, v := range up.EnvVars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return store.Code{}, errorf(ErrInvalid, "Invalid env_vars name %q", k)
		}
		if err := checkText(map[string]string{"env_vars " + k: v}); err != nil {
			return store.Code{}, err
		}
	}
	if err := checkText(map[string]string{"runtime": up.Runtime, "file_name": up.FileName, "stack": up.Stack,
		"image": up.Image, "command": up.Command, "config": up.Config}); err != nil {
		return store.Code{}, err
	}
	if rev.Image != "" {
		if err := s.policy.Check(rev.Image); err != nil {
			if errors.Is(err, imagepolicy.ErrNotAllowed) {
				return store.Code{}, errorf(ErrForbidden, "%v", err)
			}
			return store.Code{}, errorf(ErrInvalid, "%v", err)
		}
	}
	if rev.Image == "" {
		if rev.Stack == "" {
			st, ok := runtimeStacks[rev.Runtime]
			if !ok {
				return store.Code{}, errorf(ErrInvalid, "Unknown runtime %q: name a 'stack' (known: %s)", rev.Runtime, strings.Join(s.cfg.KnownStacks, ", "))
			}
			rev.Stack = st
		}
		// An alias ("python") is stored as the stack it stands for, so a
		// runner never needs to know the aliases.
		if resolved, ok := stack.Resolve(rev.Stack); ok {
			rev.Stack = resolved
		}
		if len(s.cfg.KnownStacks) > 0 && !slices.Contains(s.cfg.KnownStacks, rev.Stack) {
			return store.Code{}, errorf(ErrInvalid, "Unknown stack %q (known: %s)", rev.Stack, strings.Join(s.cfg.KnownStacks, ", "))
		}
	}
	if zip != nil {
		room, err := s.codeRoom(ctx, projectID)
		if err != nil {
			return store.Code{}, err
		}
		if room == 0 {
			return store.Code{}, errorf(ErrQuota, "Quota exceeded: the project's code packages take all the room its quota allows; delete codes first")
		}
		key := "packages/" + rev.ID + ".zip"
		sum, size, info, err := s.storePackage(ctx, key, zip)
		if err != nil {
			return store.Code{}, err
		}
		if room > 0 && size > room {
			_ = s.blobs.Delete(context.WithoutCancel(ctx), key)
			return store.Code{}, errorf(ErrQuota, "Quota exceeded: this package of %d bytes is larger than the %d bytes left in the project's code storage quota", size, room)
		}
		if st, ok := s.runnerStack(up, info); ok {
			rev.Stack = st
		}
		rev.PackageKey, rev.PackageSHA256, rev.PackageSize = key, sum, size
	}
	code, err := s.store.PutCodeRevision(ctx, rev)
	if err != nil {
		if zip != nil {
			_ = s.blobs.Delete(context.WithoutCancel(ctx), rev.PackageKey)
		}
		return store.Code{}, fmt.Errorf("store code %s: %w", rev.Name, err)
	}
	s.log.Info("code uploaded", "project_id", projectID, "code", code.Name, "code_id", code.CodeID, "rev", code.Rev, "size", rev.PackageSize)
	s.audit(ctx, projectID, "code.upload", code.CodeID, fmt.Sprintf("name=%s rev=%d size=%d", quoteDetail(code.Name), code.Rev, rev.PackageSize))
	return code, nil
}

// imageName is an image reference without its tag or digest.
func imageName(ref string) string {
	ref = strings.TrimSpace(ref)
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// inheritRevision fills an upload that carries neither a zip nor an image
// from the code's latest revision: such an upload (a JSON body, as the
// Ruby gem's codes.register sends) changes a code's options and keeps its
// package or image, and whatever else it does not name.
func (s *Service) inheritRevision(ctx context.Context, rev *store.CodeRevision, up wire.CodeUpload) error {
	prev, err := s.store.GetCodeByName(ctx, rev.ProjectID, rev.Name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(ErrInvalid, "A new code needs a zip in the 'file' field, or an 'image'")
	}
	if err != nil {
		return fmt.Errorf("look up code %s: %w", rev.Name, err)
	}
	p := prev.CodeRevision
	keep := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	keep(&rev.Runtime, p.Runtime)
	keep(&rev.FileName, p.FileName)
	keep(&rev.Stack, p.Stack)
	keep(&rev.Image, p.Image)
	keep(&rev.Command, p.Command)
	keep(&rev.Config, p.Config)
	if up.EnvVars == nil {
		rev.EnvVars = p.EnvVars
	}
	rev.MaxConcurrency, rev.Retries, rev.RetriesDelay = p.MaxConcurrency, p.Retries, p.RetriesDelay
	rev.RetriesBackoff, rev.DefaultPriority = p.RetriesBackoff, p.DefaultPriority
	rev.PackageKey, rev.PackageSHA256, rev.PackageSize = p.PackageKey, p.PackageSHA256, p.PackageSize
	if rev.Image == "" && rev.PackageKey == "" {
		return errorf(ErrInvalid, "Code %s has no package to keep: send a zip in the 'file' field, or an 'image'", rev.Name)
	}
	return nil
}

// storePackage spools the zip to a temporary file (a zip is read from its
// end, and it must be checked before anything is kept), checks it and puts
// it in the blob store. It returns its sha256 and size.
func (s *Service) storePackage(ctx context.Context, key string, r io.Reader) (string, int64, codepkg.Info, error) {
	f, err := os.CreateTemp("", "mayfly-upload-*.zip")
	if err != nil {
		return "", 0, codepkg.Info{}, fmt.Errorf("spool upload: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, s.cfg.MaxCodeBytes+1))
	if err != nil {
		// The caller's reader decides what a read error means (the API
		// turns a body over its limit into 413), so keep it wrapped.
		return "", 0, codepkg.Info{}, fmt.Errorf("read uploaded code package: %w", err)
	}
	if n > s.cfg.MaxCodeBytes {
		return "", 0, codepkg.Info{}, errorf(ErrTooLarge, "Code package is larger than %d bytes", s.cfg.MaxCodeBytes)
	}
	if n == 0 {
		return "", 0, codepkg.Info{}, errorf(ErrInvalid, "The uploaded file is empty")
	}
	info, err := s.checkPackage(ctx, f, n)
	if err != nil {
		return "", 0, info, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, info, fmt.Errorf("rewind upload: %w", err)
	}
	if _, err := s.blobs.Put(ctx, key, f); err != nil {
		return "", 0, info, fmt.Errorf("store code package: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, info, nil
}

// checkPackage checks a spooled zip. Its directory is sized up first from
// the end records, then parsed only once the memory that costs is free
// under the server-wide budget, so that many uploads at once cannot
// exhaust the server.
func (s *Service) checkPackage(ctx context.Context, f *os.File, size int64) (codepkg.Info, error) {
	dir, err := codepkg.Preflight(f, size, s.cfg.Package)
	if err != nil {
		return codepkg.Info{}, errorf(ErrInvalid, "Code package refused: %v", err)
	}
	cost := min(dir.ParseCost(), parseBudget)
	if err := s.parse.Acquire(ctx, cost); err != nil {
		return codepkg.Info{}, fmt.Errorf("wait to check code package: %w", err)
	}
	defer s.parse.Release(cost)
	info, err := codepkg.Check(f, size, s.cfg.Package)
	if err != nil {
		return info, errorf(ErrInvalid, "Code package refused: %v", err)
	}
	return info, nil
}

// GetCode returns a code of the project.
func (s *Service) GetCode(ctx context.Context, projectID, codeID string) (store.Code, error) {
	if !id.Valid(codeID) {
		return store.Code{}, errorf(ErrNotFound, "Code not found")
	}
	c, err := s.store.GetCode(ctx, projectID, codeID)
	return c, mapStoreErr(err, "Code")
}

// ListCodes lists a project's codes, most recently changed first.
func (s *Service) ListCodes(ctx context.Context, projectID string, page store.Page) ([]store.Code, error) {
	return s.store.ListCodes(ctx, projectID, page)
}

// DeleteCode removes a code, its revisions and their packages. Tasks keep
// their records.
func (s *Service) DeleteCode(ctx context.Context, projectID, codeID string) error {
	if !id.Valid(codeID) {
		return errorf(ErrNotFound, "Code not found")
	}
	revs, err := s.store.DeleteCode(ctx, projectID, codeID)
	if err != nil {
		return mapStoreErr(err, "Code")
	}
	s.revs.forget(codeID)
	if len(revs) > 0 {
		s.audit(ctx, projectID, "code.delete", codeID, "name="+quoteDetail(revs[0].Name))
	} else {
		s.audit(ctx, projectID, "code.delete", codeID, "")
	}
	for _, r := range revs {
		if r.PackageKey == "" {
			continue
		}
		if err := s.blobs.Delete(ctx, r.PackageKey); err != nil && !errors.Is(err, blob.ErrNotFound) {
			s.log.Warn("could not remove code package", "key", r.PackageKey, "err", err)
		}
	}
	return nil
}

// CodeRevisions lists a code's revisions, newest first.
func (s *Service) CodeRevisions(ctx context.Context, projectID, codeID string, page store.Page) ([]store.CodeRevision, error) {
	if _, err := s.GetCode(ctx, projectID, codeID); err != nil {
		return nil, err
	}
	return s.store.ListCodeRevisions(ctx, projectID, codeID, page)
}

// OpenCodePackage opens the zip of a code's revision (0 = latest).
func (s *Service) OpenCodePackage(ctx context.Context, projectID, codeID string, rev int) (io.ReadCloser, store.CodeRevision, error) {
	code, err := s.GetCode(ctx, projectID, codeID)
	if err != nil {
		return nil, store.CodeRevision{}, err
	}
	r := code.CodeRevision
	if rev > 0 && rev != code.Rev {
		r, err = s.findRevision(ctx, projectID, codeID, rev)
		if err != nil {
			return nil, store.CodeRevision{}, err
		}
	}
	if r.PackageKey == "" {
		return nil, store.CodeRevision{}, errorf(ErrNotFound, "Revision %d of code %s has no package (image code)", r.Rev, code.Name)
	}
	rc, err := s.openVerified(ctx, r)
	if err != nil {
		return nil, store.CodeRevision{}, err
	}
	return rc, r, nil
}

// openVerified opens the package of a revision after checking it against
// the checksum and size recorded at upload. The check is a first pass over
// the blob (or a spooled copy, when the blob cannot seek), because once a
// download's headers are out, a bad byte can no longer be refused.
func (s *Service) openVerified(ctx context.Context, r store.CodeRevision) (io.ReadCloser, error) {
	rc, err := s.blobs.Get(ctx, r.PackageKey)
	if err != nil {
		return nil, fmt.Errorf("open package of %s rev %d: %w", r.Name, r.Rev, err)
	}
	src, ok := rc.(io.ReadSeeker)
	var spool *os.File
	if !ok {
		spool, err = os.CreateTemp("", "mayfly-package-*.zip")
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("spool package of %s rev %d: %w", r.Name, r.Rev, err)
		}
		os.Remove(spool.Name()) // gone with its descriptor
		src = spool
	}
	h := sha256.New()
	var dst io.Writer = h
	if spool != nil {
		dst = io.MultiWriter(spool, h)
	}
	n, err := io.Copy(dst, rc)
	if spool != nil {
		rc.Close()
		rc = spool
	}
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("read package of %s rev %d: %w", r.Name, r.Rev, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.PackageSHA256 || n != r.PackageSize {
		rc.Close()
		s.log.Error("STORED CODE PACKAGE IS CORRUPT: it no longer matches the checksum recorded at upload; upload the code again",
			"project_id", r.ProjectID, "code", r.Name, "code_id", r.CodeID, "rev", r.Rev, "key", r.PackageKey,
			"want_sha256", r.PackageSHA256, "got_sha256", got, "want_size", r.PackageSize, "got_size", n)
		return nil, errorf(ErrCorrupt, "Stored package of code %s rev %d is corrupt (it no longer matches its checksum); upload the code again", r.Name, r.Rev)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		rc.Close()
		return nil, fmt.Errorf("rewind package of %s rev %d: %w", r.Name, r.Rev, err)
	}
	return rc, nil
}

func (s *Service) findRevision(ctx context.Context, projectID, codeID string, rev int) (store.CodeRevision, error) {
	for page := 0; ; page++ {
		revs, err := s.store.ListCodeRevisions(ctx, projectID, codeID, store.Page{Page: page, PerPage: 100})
		if err != nil {
			return store.CodeRevision{}, err
		}
		for _, r := range revs {
			if r.Rev == rev {
				return r, nil
			}
		}
		if len(revs) < 100 {
			return store.CodeRevision{}, errorf(ErrNotFound, "Revision %d not found", rev)
		}
	}
}
