package api_test

import (
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// setupRealStacks is setup with the stacks the binary carries, as the
// server configures them.
func setupRealStacks(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, service.Config{KnownStacks: stack.Names()})
}

func TestUploadStackNames(t *testing.T) {
	t.Parallel()
	b := setupRealStacks(t)
	zip := makeZip(t, zentry{name: "worker.py", data: "print(1)\n"})

	st, body := b.upload(`{"name":"old","runtime":"python","file_name":"worker.py","stack":"python-2.7"}`, zip)
	wantErr(t, st, body, 400, `unknown stack "python-2.7"`)
	wantErr(t, st, body, 400, "python-3.11")

	// Aliases are accepted and stored as the stack they name; a runtime
	// alone picks its stack.
	for data, want := range map[string]string{
		`{"name":"alias","runtime":"python","file_name":"worker.py","stack":"python"}`:      "python-3.11",
		`{"name":"versioned","runtime":"python","file_name":"worker.py","stack":"node-18"}`: "node-18",
		`{"name":"runtime","runtime":"ruby","file_name":"worker.rb"}`:                       "ruby-3.1",
		`{"name":"client","runtime":"sh","file_name":"__runner__.sh","stack":"php"}`:        "php-8.2",
		`{"name":"bin","runtime":"binary","file_name":"worker"}`:                            "binary",
	} {
		st, body := b.upload(data, zip)
		if st != 200 {
			t.Fatalf("upload %s: %d %s", data, st, body)
		}
		up := decode[wire.UploadResponse](t, body)
		st, body = b.do("GET", b.url("/codes/"+up.ID), nil)
		if c := decode[wire.Code](t, body); st != 200 || c.Stack != want {
			t.Errorf("upload %s: stored stack %q, want %q (%s)", data, c.Stack, want, body)
		}
	}
}
