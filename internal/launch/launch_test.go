package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	argv := []string{"/bin/sh", "-c", "echo \"$1\"\nnext line", "", "x=y"}
	env := []string{"A=1", "B=with spaces\nand a newline", "EMPTY="}
	gotArgv, gotEnv, err := Decode(Encode(argv, env))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotArgv, argv) || !slices.Equal(gotEnv, env) {
		t.Errorf("decoded %q %q, want %q %q", gotArgv, gotEnv, argv, env)
	}
	if a, e, err := Decode(Encode([]string{"true"}, nil)); err != nil || !slices.Equal(a, []string{"true"}) || len(e) != 0 {
		t.Errorf("no env: %q %q %v", a, e, err)
	}
	for name, bad := range map[string][]byte{
		"empty":      nil,
		"truncated":  Encode([]string{"a"}, []string{"B=1"})[:10],
		"not ours":   []byte("hello\x00"),
		"no argv":    []byte(magic + "\x002\x000\x00"),
		"count past": []byte(magic + "\x004\x003\x00a\x00"),
		"too long":   []byte(magic + "\x0099999999999\x00"),
	} {
		if _, _, err := Decode(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestReadFromOpenPipe: the launcher reads its launch file from a FIFO the
// driver keeps open, so it must stop at the file's end, not wait for EOF.
func TestReadFromOpenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := w.Write(Encode([]string{"sh", "-c", "true"}, []string{"A=1"})); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		argv, env, err := Read(r)
		if err == nil && (!slices.Equal(argv, []string{"sh", "-c", "true"}) || !slices.Equal(env, []string{"A=1"})) {
			err = fmt.Errorf("read %q %q", argv, env)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read waits for the writer to close")
	}
}

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "HOSTNAME=abc", "HOME=/root"}
	got := MergeEnv(base, []string{"HOME=/mnt/task", "A=1", "HOSTNAME", "A=2", "PATH=/usr/bin:/bin"})
	want := []string{"PATH=/usr/bin:/bin", "HOME=/mnt/task", "A=2"}
	if !slices.Equal(got, want) {
		t.Errorf("merged %q, want %q", got, want)
	}
	if base[2] != "HOME=/root" {
		t.Errorf("base modified: %q", base)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := LookPath("prog", []string{"PATH=/nonexistent:" + dir}); err != nil || p != exe {
		t.Errorf("LookPath(prog) = %q, %v; want %q", p, err, exe)
	}
	if _, err := LookPath("data", []string{"PATH=" + dir}); err == nil {
		t.Errorf("a file that is not executable was found")
	}
	if _, err := LookPath("prog", nil); err == nil {
		t.Errorf("found without a PATH")
	}
	if p, err := LookPath("./x/y", nil); err != nil || p != "./x/y" {
		t.Errorf("a path with a slash: %q, %v", p, err)
	}
}
