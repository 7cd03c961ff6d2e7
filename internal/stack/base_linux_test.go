package stack

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUnescapeMount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`/tmp/plain`:           "/tmp/plain",
		`/tmp/with\040space`:   "/tmp/with space",
		`/tmp/tab\011and\134`:  "/tmp/tab\tand\\",
		`/tmp/trailing\04`:     `/tmp/trailing\04`,
		`/tmp/not\999octal\04`: `/tmp/not\999octal\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnmountUnderNothingMounted(t *testing.T) {
	t.Parallel()
	if err := unmountUnder(t.TempDir()); err != nil {
		t.Errorf("unmountUnder a plain folder: %v", err)
	}
}

func TestLockBuild(t *testing.T) {
	t.Parallel()
	name := "test-lock-" + time.Now().Format("150405.000000000")
	t.Cleanup(func() { os.Remove(filepath.Join(os.TempDir(), "mayfly-stack-"+name+".lock")) })
	unlock, err := lockBuild(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder waits: its context ends first.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockBuild(ctx, name); err == nil {
		t.Fatal("lock taken twice")
	}
	unlock()
	again, err := lockBuild(t.Context(), name)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}
