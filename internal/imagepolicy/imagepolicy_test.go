package imagepolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	p, err := New([]string{"myorg/*", "alpine:3.*", "docker.io/library/busybox", "ghcr.io/acme/tool@sha256:*"})
	if err != nil {
		t.Fatal(err)
	}
	for image, want := range map[string]bool{
		"mayfly/stack:busybox":         true,
		"mayfly/stack":                 true,  // mayfly/stack:latest, ours if it exists
		"mayfly/code:0123456789abcdef": false, // another project's baked code
		"mayfly/stack-evil:x":          false,
		"myorg/app":                    true,
		"myorg/app:1.2":                true,
		"docker.io/myorg/app:1.2":      true,
		"myorg/team/app:1":             false, // '*' does not cross '/'
		"otherorg/app":                 false,
		"alpine:3.19":                  true,
		"docker.io/library/alpine:3.1": true,
		"alpine":                       false,
		"alpine:edge":                  false,
		"busybox:1.36":                 true,
		"busybox":                      true,
		"ghcr.io/acme/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": true,
		"ghcr.io/acme/tool:1": false,
		// What an engine could take for an image id is never allowed.
		"50fa774a09af": false,
		"sha256:50fa774a09af0123456789abcdef0123456789abcdef0123456789abcdef01": false,
		"":          false,
		"Bad Image": false,
	} {
		err := p.Check(image)
		if (err == nil) != want {
			t.Errorf("Check(%q) = %v, want allowed=%v", image, err, want)
		}
		if err != nil && image != "" && image != "Bad Image" {
			if !strings.Contains(err.Error(), "--allow-image") || !errors.Is(err, ErrNotAllowed) {
				t.Errorf("Check(%q): not ErrNotAllowed, or the message does not name the flag: %v", image, err)
			}
		}
		if (image == "" || image == "Bad Image") && !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", image, err)
		}
	}
}

func TestDefaultAllowsOnlyStacks(t *testing.T) {
	t.Parallel()
	var zero Policy
	if err := zero.Check("mayfly/stack:python-3.11"); err != nil {
		t.Errorf("zero policy refuses a stack: %v", err)
	}
	for _, image := range []string{"busybox", "alpine:3", "mayfly/code:abc"} {
		if err := zero.Check(image); err == nil {
			t.Errorf("zero policy allows %s", image)
		}
	}
}

func TestBadPattern(t *testing.T) {
	t.Parallel()
	if _, err := New([]string{"myorg/[z-"}); err == nil {
		t.Error("malformed pattern accepted")
	}
}
