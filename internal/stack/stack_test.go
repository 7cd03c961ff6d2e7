package stack

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mayfly-run/mayfly/stacks"
)

func TestEmbeddedRecipes(t *testing.T) {
	t.Parallel()
	names := Names()
	if !slices.Contains(names, "busybox") {
		t.Fatalf("Names() = %v, want busybox among them", names)
	}
	for _, name := range names {
		r, err := loadRecipe(stacks.FS(), name)
		if err != nil {
			t.Errorf("recipe of %s: %v", name, err)
			continue
		}
		if len(r.Files) > 0 && len(r.DebianPackages) == 0 {
			t.Errorf("stack %s takes host files but names no Debian package", name)
		}
		if _, err := fs.Stat(stacks.FS(), name+"/Dockerfile"); err != nil {
			t.Errorf("stack %s: %v", name, err)
		}
	}
	if got := Image("busybox"); got != "mayfly/stack:busybox" {
		t.Errorf("Image(busybox) = %q", got)
	}
}

func TestUnknownStack(t *testing.T) {
	t.Parallel()
	_, _, err := Build(t.Context(), "no-such-stack", nil, false)
	if err == nil || !strings.Contains(err.Error(), "no-such-stack") || !strings.Contains(err.Error(), "busybox") {
		t.Errorf("error = %v, want one naming the stack and the known ones", err)
	}
}

// testRecipes is a stack "tiny" that takes bin/tool from the host.
func testRecipes(dockerfile string) fstest.MapFS {
	return fstest.MapFS{
		"tiny/Dockerfile": {Data: []byte(dockerfile)},
		"tiny/stack.json": {Data: []byte(`{"files": {"bin/tool": "/usr/bin/tool"}, "debian_packages": ["tool-static"]}`)},
		"tiny/helper.sh":  {Data: []byte("echo help\n")},
		"notastack/x":     {Data: []byte("x")},
	}
}

func writeHostFile(t *testing.T, root, body string) {
	t.Helper()
	p := filepath.Join(root, "usr/bin/tool")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// WriteFile keeps the mode of an existing file; umask may have cut it.
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestBuildContext(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeHostFile(t, root, "tool v1")
	fsys := testRecipes("FROM scratch\n")

	if got := names(fsys); !slices.Equal(got, []string{"tiny"}) {
		t.Errorf("names = %v, want [tiny] (folders without stack.json are no stacks)", got)
	}

	tarball, digest, err := buildContext(fsys, root, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		typ  byte
		mode int64
		body string
	}
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[hdr.Name] = entry{hdr.Typeflag, hdr.Mode, string(body)}
		order = append(order, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(contextEpoch) {
			t.Errorf("%s: owner %d:%d, time %v; want fixed ones", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
	}
	want := map[string]entry{
		"Dockerfile": {tar.TypeReg, 0o644, "FROM scratch\n"},
		"stack.json": {tar.TypeReg, 0o644, string(fsys["tiny/stack.json"].Data)},
		"helper.sh":  {tar.TypeReg, 0o644, "echo help\n"},
		"bin/":       {tar.TypeDir, 0o755, ""},
		"bin/tool":   {tar.TypeReg, 0o755, "tool v1"},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %+v, want %+v", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %d", order, len(want))
	}
	if !slices.IsSorted(order) {
		t.Errorf("entries not sorted: %v", order)
	}
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Errorf("digest %q", digest)
	}

	// Same inputs, same digest; any change of recipe or host file, another.
	_, again, err := buildContext(fsys, root, "tiny")
	if err != nil || again != digest {
		t.Errorf("digest of the same inputs changed: %s -> %s (%v)", digest, again, err)
	}
	_, changedRecipe, err := buildContext(testRecipes("FROM scratch\nCMD [\"tool\"]\n"), root, "tiny")
	if err != nil || changedRecipe == digest {
		t.Errorf("digest did not change with the Dockerfile (%v)", err)
	}
	writeHostFile(t, root, "tool v2")
	_, changedHost, err := buildContext(fsys, root, "tiny")
	if err != nil || changedHost == digest || changedHost == changedRecipe {
		t.Errorf("digest did not change with the host file (%v)", err)
	}
}

func TestMissingHostFile(t *testing.T) {
	t.Parallel()
	_, _, err := buildContext(testRecipes("FROM scratch\n"), t.TempDir(), "tiny")
	if !errors.Is(err, ErrMissingHostFile) {
		t.Fatalf("error = %v, want ErrMissingHostFile", err)
	}
	for _, s := range []string{"tiny", "/usr/bin/tool", "tool-static"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestRecipeIsStrict(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"typo/Dockerfile": {Data: []byte("FROM scratch\n")},
		"typo/stack.json": {Data: []byte(`{"file": {"x": "/x"}}`)},
		"bad/Dockerfile":  {Data: []byte("FROM scratch\n")},
		"bad/stack.json":  {Data: []byte(`{"files": {"../x": "/x"}}`)},
	}
	if _, err := loadRecipe(fsys, "typo"); err == nil {
		t.Errorf("a misspelt key was accepted")
	}
	if _, err := loadRecipe(fsys, "bad"); err == nil {
		t.Errorf("a context path outside the context was accepted")
	}
}

func TestCopyBuildStream(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	stream := `{"stream":"Step 1/2 : FROM scratch\n"}
{"stream":" ---\u003e Running\n"}{"aux":{"ID":"sha256:abc"}}
{"stream":"Successfully built abc\n"}
`
	if err := copyBuildStream(&out, strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if want := "Step 1/2 : FROM scratch\n ---> Running\nSuccessfully built abc\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}

	out.Reset()
	failed := `{"stream":"Step 1/2 : RUN false\n"}
{"errorDetail":{"code":1,"message":"The command '/bin/sh -c false' returned a non-zero code: 1"},"error":"The command '/bin/sh -c false' returned a non-zero code: 1"}
`
	err := copyBuildStream(&out, strings.NewReader(failed))
	if err == nil || !strings.Contains(err.Error(), "non-zero code: 1") {
		t.Errorf("error = %v, want the build's error", err)
	}
	if out.String() != "Step 1/2 : RUN false\n" {
		t.Errorf("output before the error lost: %q", out.String())
	}
	if err := copyBuildStream(io.Discard, strings.NewReader(`{"stream":`)); err == nil {
		t.Errorf("a truncated stream was accepted")
	}
}
