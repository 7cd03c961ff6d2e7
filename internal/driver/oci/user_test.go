package oci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The image's /etc/group gives a user its supplementary groups, as Docker
// does: only when no group is given, only groups that list the user.
func TestResolveUserSupplementaryGroups(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	write := func(dir, name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The top layer's files hide the bottom's.
	write(bottom, "passwd", "root:x:0:0:root:/root:/bin/sh\n")
	write(top, "passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n")
	write(top, "group", "root:x:0:\napp:x:1000:app\naudio:x:29:pulse,app\nvideo:x:44:app\nstaff:x:50:other\nbroken:x:nope:app\n")
	lowers := []string{top, bottom}
	for _, c := range []struct {
		user     string
		uid, gid int
		sgids    []uint32
	}{
		{"app", 1000, 1000, []uint32{29, 44}},
		{"1000", 1000, 1000, []uint32{29, 44}},
		{"app:staff", 1000, 50, nil},
		{"1000:1000", 1000, 1000, nil},
		{"nobody", 65534, 65534, nil},
		{"4242", 4242, 0, nil}, // no entry: no name to look up
	} {
		uid, gid, sgids, _, err := resolveUser(c.user, lowers)
		if err != nil {
			t.Errorf("%s: %v", c.user, err)
			continue
		}
		if uid != c.uid || gid != c.gid || !slices.Equal(sgids, c.sgids) {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", c.user, uid, gid, sgids, c.uid, c.gid, c.sgids)
		}
	}
}
