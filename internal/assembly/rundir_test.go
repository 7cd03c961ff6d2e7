package assembly

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// A runner's task files go to memory when the host has a memory file
// system (Linux: /dev/shm at least), in a directory of the user's own.
func TestRunDirInMemory(t *testing.T) {
	data := t.TempDir()
	got := RunDir(data, "runner-a")
	if runtime.GOOS != "linux" || memoryRunBase() == "" {
		if got != filepath.Join(data, "run") {
			t.Fatalf("RunDir without a memory file system = %s", got)
		}
		t.Skip("no memory file system here")
	}
	if !isMemoryFS(filepath.Dir(filepath.Dir(got))) || filepath.Base(got) != "runner-a" {
		t.Fatalf("RunDir = %s; want runner-a under a memory file system", got)
	}
	if !ownedDir(filepath.Dir(got)) {
		t.Fatalf("%s is not a closed directory of ours", filepath.Dir(got))
	}
}

// The attack: another user of a shared /dev/shm makes the directory the
// runner would use first, as a link to a place of theirs (or opens it up);
// the runner must not put payloads there.
func TestRunDirRefusesAPlantedDirectory(t *testing.T) {
	dir := t.TempDir()
	target := t.TempDir()
	link := filepath.Join(dir, "planted")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if ownedDir(link) {
		t.Fatal("a symbolic link was taken for the runner's own directory")
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if ownedDir(open) {
		t.Fatal("a directory others may write to was taken for the runner's own")
	}
	closed := filepath.Join(dir, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && !ownedDir(closed) {
		t.Fatal("the runner's own closed directory was refused")
	}
}
