package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeyIsMadeOnceAndKept(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "k.key")
	k1, err := LoadOrCreateKey(p, "test key")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeySize {
		t.Fatalf("key is %d bytes, want %d", len(k1), KeySize)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(p, "test key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("second load made a new key")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// A key file cut short (a crash mid-write by an older version, a bad copy)
// must stop the start, not be replaced: a new key would invalidate every
// token the old one covers.
func TestShortKeyFileIsRefusedNotReplaced(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "short", strings.Repeat("x", KeySize-1)} {
		p := filepath.Join(t.TempDir(), "task-token.key")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateKey(p, "task token key")
		if err == nil {
			t.Fatalf("a %d-byte key file was accepted", len(content))
		}
		if !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), p) {
			t.Errorf("error does not say which file is damaged: %v", err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != content {
			t.Fatalf("damaged key file was rewritten: now %d bytes", len(got))
		}
	}
}

func TestUnreadableKeyFileIsAnError(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "k.key")
	if err := os.Mkdir(p, 0o700); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(p, "test key"); err == nil {
		t.Fatal("a directory was taken for a key file")
	}
}

// Servers started together on one data directory must agree on the key.
func TestConcurrentFirstStartsShareOneKey(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "k.key")
	const n = 16
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(p, "test key") })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("starts %d and 0 got different keys", i)
		}
	}
	onDisk, _ := os.ReadFile(p)
	if !bytes.Equal(onDisk, keys[0]) {
		t.Fatal("key on disk differs from the one returned")
	}
}
