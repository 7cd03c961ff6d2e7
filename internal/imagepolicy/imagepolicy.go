// Package imagepolicy decides which container images an image code may
// name. The engine a runner uses holds more than tasks should see (other
// tenants' private images, infrastructure images, the code images of other
// projects), and a task can print every file of the image it runs from, so
// an image code may only name an image the operator allowed.
//
// The server checks at upload and every runner checks again, with its own
// list, before it runs anything: the list may have changed since the
// upload, and a remote runner does not take the server's word for it.
package imagepolicy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// Builtin are the patterns always allowed: Mayfly's own stacks.
var Builtin = []string{"mayfly/stack:*"}

// Flag names the setting in messages, so a refused user can tell the
// operator what to change.
const Flag = "--allow-image (MAYFLY_ALLOW_IMAGES)"

// Errors Check wraps: a refused image, and a name that is no image
// reference at all.
var (
	ErrNotAllowed = errors.New("image not allowed")
	ErrInvalid    = errors.New("invalid image reference")
)

// checkError carries Check's message and one of its sentinels.
type checkError struct {
	msg  string
	kind error
}

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Unwrap() error { return e.kind }

// Policy is an allow-list of image patterns. The zero Policy allows only
// Builtin.
type Policy struct {
	patterns []string
}

// New checks patterns and returns the policy allowing them and Builtin.
// A pattern is a shell glob (path.Match: '*' does not cross '/') matched
// against the image's short form, name:tag ("myorg/app:1", "alpine:3.19")
// or name@digest, and against its name alone, so "myorg/app" allows every
// tag of it and "myorg/*" every image of myorg. Names are compared in the
// short form docker prints: "docker.io/library/alpine" is "alpine".
func New(patterns []string) (Policy, error) {
	var p Policy
	for _, pat := range append(append([]string{}, Builtin...), patterns...) {
		pat = strings.TrimSpace(pat)
		if pat == "" {
			continue
		}
		pat = shortPattern(pat)
		if _, err := path.Match(pat, ""); err != nil {
			return Policy{}, fmt.Errorf("image pattern %q: %w", pat, err)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// Patterns returns the allowed patterns, Builtin first.
func (p Policy) Patterns() []string {
	if p.patterns == nil {
		return append([]string{}, Builtin...)
	}
	return append([]string{}, p.patterns...)
}

// shortPattern writes a pattern in the form images are compared in, so
// "docker.io/library/alpine:*" works as well as "alpine:*".
func shortPattern(pat string) string {
	if rest, ok := strings.CutPrefix(pat, "docker.io/"); ok {
		pat = rest
		if r, ok := strings.CutPrefix(pat, "library/"); ok {
			pat = r
		}
	}
	return pat
}

// hexID is what an engine may take for an image id (or a prefix of one)
// when no image of that name exists.
var hexID = regexp.MustCompile(`^(sha256:)?[0-9a-f]+$`)

// Check returns nil when image may run, else an error that says why and
// what to change.
func (p Policy) Check(image string) error {
	patterns := p.Patterns()
	refuse := func(why string) error {
		return &checkError{kind: ErrNotAllowed, msg: fmt.Sprintf("Image %q is not allowed%s: image codes may only name images the operator allows with %s (allowed here: %s)",
			image, why, Flag, strings.Join(patterns, ", "))}
	}
	if hexID.MatchString(image) {
		return refuse(" (it reads as an image id)")
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return &checkError{kind: ErrInvalid, msg: fmt.Sprintf("Image %q is not a valid image reference: %v", image, err)}
	}
	name := reference.FamiliarName(named)
	full := reference.FamiliarString(reference.TagNameOnly(named))
	for _, pat := range patterns {
		for _, s := range []string{full, name} {
			if ok, _ := path.Match(pat, s); ok {
				return nil
			}
		}
	}
	return refuse("")
}
