package api_test

import (
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestImageCodeAllowList is the attack of an image code that names an
// image of the engine host (another tenant's, an infrastructure image, the
// baked code of another project) to print its files: refused with 403 and
// a message naming the setting, and nothing stored.
func TestImageCodeAllowList(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{AllowImages: []string{"myorg/*"}})
	for _, image := range []string{"mayfly-private/secret:1", "mayfly/code:0123456789abcdef01234567", "registry:2", "50fa774a09af"} {
		st, body := b.upload(`{"name":"peek","image":"`+image+`"}`, nil)
		wantErr(t, st, body, 403, "--allow-image")
	}
	st, body := b.upload(`{"name":"peek","image":"Not An Image"}`, nil)
	wantErr(t, st, body, 400, "not a valid image reference")
	st, body = b.do("GET", b.url("/codes"), nil)
	if l := decode[wire.CodeList](t, body); st != 200 || len(l.Codes) != 0 {
		t.Fatalf("codes after refused uploads: %s", body)
	}
	for _, image := range []string{"myorg/app:1", "mayfly/stack:busybox"} {
		if st, body := b.upload(`{"name":"ok","image":"`+image+`"}`, nil); st != 200 {
			t.Errorf("upload of allowed image %s: %d %s", image, st, body)
		}
	}
}
