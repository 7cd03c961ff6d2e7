package stack

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mayfly-run/mayfly/stacks"
)

func TestEmbeddedDebootstrapRecipes(t *testing.T) {
	t.Parallel()
	want := map[string]string{"python": "python-3.11", "node": "node-18", "ruby": "ruby-3.1", "php": "php-8.2"}
	if got := Aliases(); !maps.Equal(got, want) {
		t.Errorf("Aliases() = %v, want %v", got, want)
	}
	for _, name := range []string{"binary", "python-3.11", "node-18", "ruby-3.1", "php-8.2"} {
		r, err := loadRecipe(stacks.FS(), name)
		if err != nil {
			t.Errorf("recipe of %s: %v", name, err)
			continue
		}
		if r.Debootstrap == nil || r.Debootstrap.Suite != "bookworm" {
			t.Errorf("stack %s: debootstrap %+v, want a bookworm base", name, r.Debootstrap)
		}
		df, _ := fs.ReadFile(stacks.FS(), name+"/Dockerfile")
		if !strings.Contains(string(df), "ARG BASE\nFROM ${BASE}\n") {
			t.Errorf("stack %s: the Dockerfile does not start from the BASE argument", name)
		}
	}
	for _, name := range Names() {
		r, _ := loadRecipe(stacks.FS(), name)
		if r.Debootstrap == nil {
			continue
		}
		if ref := BaseImage(name, *r.Debootstrap); !strings.HasPrefix(ref, BaseRepository+":"+name+"-") {
			t.Errorf("BaseImage(%s) = %q", name, ref)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"python": "python-3.11", "python-3.11": "python-3.11", "node": "node-18", "ruby": "ruby-3.1",
		"php": "php-8.2", "binary": "binary", "busybox": "busybox",
	} {
		if got, ok := Resolve(in); !ok || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "python-2.7", "Python", "cobol"} {
		if got, ok := Resolve(in); ok {
			t.Errorf("Resolve(%q) = %q, want not found", in, got)
		}
	}
	// No alias may hide a stack or another alias.
	seen := map[string]bool{}
	for _, n := range Names() {
		seen[n] = true
	}
	for _, n := range Names() {
		r, _ := loadRecipe(stacks.FS(), n)
		for _, a := range r.Aliases {
			if seen[a] {
				t.Errorf("alias %q of %s is taken", a, n)
			}
			seen[a] = true
		}
	}
}

func TestDebootstrapRecipeChecked(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{}
	for name, js := range map[string]string{
		"nosuite":  `{"debootstrap": {"include": ["python3"]}}`,
		"badpkg":   `{"debootstrap": {"suite": "bookworm", "include": ["python3; rm -rf /"]}}`,
		"variant":  `{"debootstrap": {"suite": "bookworm", "variant": "fakechroot"}}`,
		"alias":    `{"aliases": ["Bad Alias"]}`,
		"typo":     `{"debootstrap": {"suite": "bookworm", "includes": ["x"]}}`,
		"good":     `{"aliases": ["g"], "debootstrap": {"suite": "bookworm", "include": ["python3", "libstdc++6"]}}`,
		"selfnick": `{"aliases": ["selfnick"]}`,
	} {
		fsys[name+"/Dockerfile"] = &fstest.MapFile{Data: []byte("FROM scratch\n")}
		fsys[name+"/stack.json"] = &fstest.MapFile{Data: []byte(js)}
	}
	for _, name := range []string{"nosuite", "badpkg", "variant", "alias", "typo", "selfnick"} {
		if _, err := loadRecipe(fsys, name); err == nil {
			t.Errorf("recipe %s accepted", name)
		}
	}
	r, err := loadRecipe(fsys, "good")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := resolve(fsys, "g"); !ok || got != "good" {
		t.Errorf("resolve(g) = %q, %v", got, ok)
	}
	// The digest ignores the order of the packages and follows their set.
	d := *r.Debootstrap
	swapped := d
	swapped.Include = []string{"libstdc++6", "python3"}
	if baseDigest(d) != baseDigest(swapped) {
		t.Errorf("package order changed the digest")
	}
	more := d
	more.Include = append(slices.Clone(d.Include), "ca-certificates")
	if baseDigest(d) == baseDigest(more) || BaseImage("good", d) == BaseImage("good", more) {
		t.Errorf("another package left the digest unchanged")
	}
	explicit := d
	explicit.Variant = "minbase"
	if baseDigest(d) != baseDigest(explicit) {
		t.Errorf("the default variant and minbase differ")
	}
}

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDebianMirror(t *testing.T) {
	root := t.TempDir()
	if _, err := debianMirror(root, "bookworm"); err == nil || !strings.Contains(err.Error(), MirrorEnv) {
		t.Errorf("no sources: %v, want an error naming %s", err, MirrorEnv)
	}
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] https://other.example/repo nodistro main
deb cdrom:[Debian]/ bookworm main
`)
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/debian.sources"), `Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
# a comment inside
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`)
	got, err := debianMirror(root, "bookworm")
	if err != nil || got != "http://mirror.example/debian" {
		t.Errorf("debianMirror = %q, %v; want the deb822 entry serving bookworm", got, err)
	}
	// A host on another release: its Debian mirror serves bookworm too.
	got, err = debianMirror(root, "trixie")
	if err != nil || got != "http://mirror.example/debian" {
		t.Errorf("debianMirror(trixie) = %q, %v; want the plain Debian mirror", got, err)
	}
	t.Setenv(MirrorEnv, "http://override.example/debian")
	if got, err := debianMirror(root, "bookworm"); err != nil || got != "http://override.example/debian" {
		t.Errorf("with %s: %q, %v", MirrorEnv, got, err)
	}
}

func TestParseOneLine(t *testing.T) {
	t.Parallel()
	got := parseOneLine([]byte("deb http://a.example/debian bookworm main # trailing\n" +
		"deb [ arch=amd64 ] http://b.example/debian bookworm-updates main\n" +
		"  deb   http://c.example/debian   sid main\n"))
	want := []aptSource{
		{"http://a.example/debian", []string{"bookworm"}},
		{"http://b.example/debian", []string{"bookworm-updates"}},
		{"http://c.example/debian", []string{"sid"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].uri != want[i].uri || !slices.Equal(got[i].suites, want[i].suites) {
			t.Errorf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestSlimRootfs(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "keep.txt"), "host file")
	root := t.TempDir()
	for p, body := range map[string]string{
		"usr/share/doc/python3/copyright":           "license",
		"usr/share/doc/python3/changelog.Debian.gz": "xxxxxxxx",
		"usr/share/doc/python3/README":              "readme",
		"usr/share/man/man1/python3.1.gz":           "man",
		"usr/share/locale/de/LC_MESSAGES/x.mo":      "de",
		"usr/share/locale/locale.alias":             "alias",
		"var/lib/apt/lists/deb_InRelease":           "lists",
		"var/lib/apt/lists/lock":                    "",
		"var/cache/apt/pkgcache.bin":                "cache",
		"var/cache/apt/archives/python3_3.11.deb":   "deb",
		"var/log/dpkg.log":                          "log",
		"var/log/apt/history.log":                   "log",
		"var/lib/dpkg/status-old":                   "old",
		"var/lib/dpkg/status":                       "status",
		"etc/hostname":                              "build-host",
		"etc/resolv.conf":                           "nameserver 10.0.0.1",
		"usr/bin/python3":                           "binary",
		"tmp/junk":                                  "junk",
	} {
		writeFile(t, filepath.Join(root, p), body)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/apt/lists/partial"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Links that lead out of the tree must not let the cleanup reach the
	// host: an absolute one among the docs, and one where a folder to be
	// emptied is expected.
	if err := os.Symlink(outside, filepath.Join(root, "usr/share/doc/evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "usr/share/info")); err != nil {
		t.Fatal(err)
	}

	if err := slimRootfs(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"usr/share/doc/python3/copyright", "usr/share/locale/locale.alias", "var/lib/dpkg/status",
		"usr/bin/python3", "var/lib/apt/lists/lock", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
		"var/log/apt", "etc/dpkg/dpkg.cfg.d/mayfly-slim", "tmp",
	} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	for _, p := range []string{
		"usr/share/doc/python3/changelog.Debian.gz", "usr/share/doc/python3/README", "usr/share/man/man1",
		"usr/share/locale/de", "var/lib/apt/lists/deb_InRelease", "var/cache/apt/pkgcache.bin",
		"var/cache/apt/archives/python3_3.11.deb", "var/log/dpkg.log", "var/log/apt/history.log",
		"var/lib/dpkg/status-old", "tmp/junk",
	} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s kept", p)
		}
	}
	for _, p := range []string{"etc/hostname", "etc/resolv.conf"} {
		if data, err := os.ReadFile(filepath.Join(root, p)); err != nil || len(data) != 0 {
			t.Errorf("%s = %q, %v; want it empty", p, data, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep.txt")); err != nil || string(data) != "host file" {
		t.Errorf("a file outside the tree was touched: %q, %v", data, err)
	}
}

func TestTreeSize(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a"), "12345")
	writeFile(t, filepath.Join(root, "d/b"), "123")
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	if n, err := treeSize(root); err != nil || n != 8 {
		t.Errorf("treeSize = %d, %v; want 8 (links not followed)", n, err)
	}
}
