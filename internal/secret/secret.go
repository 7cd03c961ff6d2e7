// Package secret keeps the server's key files: random keys made once, on
// first start, and kept in the data directory beside (never inside) the
// store. Task tokens are signed with one and API token digests are keyed
// with another, so losing or changing a key file invalidates every token it
// covers: a key file is written atomically, and one that exists but cannot
// be a key stops the server instead of being silently replaced.
package secret

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeySize is the length of the keys this package makes, and the least a key
// file must hold.
const KeySize = 32

// LoadOrCreateKey returns the key in the file at path, making a random one
// of KeySize bytes when no file exists. A file shorter than KeySize (cut
// short by a crash of an older version, or truncated by hand) is an error:
// replacing it would silently invalidate every token signed with the key.
// Two processes that start together end up with the same key: the file is
// linked into place only if absent, and the loser reads the winner's.
func LoadOrCreateKey(path, what string) ([]byte, error) {
	key, err := readKey(path, what)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make %s: %w", what, err)
	}
	created, err := createExclusive(path, key)
	if err != nil {
		return nil, fmt.Errorf("save %s to %s: %w", what, path, err)
	}
	if !created {
		return readKey(path, what)
	}
	return key, nil
}

func readKey(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s from %s: %w", what, path, err)
	}
	if len(b) < KeySize {
		return nil, fmt.Errorf("%s file %s holds %d bytes, want at least %d: it is damaged. "+
			"Restore it from a backup; only if none exists, delete it to make a new key "+
			"(every token it covers then stops working)", what, path, len(b), KeySize)
	}
	return b, nil
}

// createExclusive writes data to path only if path does not exist yet, so
// that a reader never sees a partial file: the bytes go to a temporary
// file that is synced, then linked to path (which fails if path exists),
// and the directory is synced so the new name survives a crash too. It
// reports false when another process created path first.
func createExclusive(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		// A filesystem without hard links: rename is still atomic, only
		// not exclusive, which matters only to two first starts at once.
		if err := os.Rename(tmp, path); err != nil {
			return false, err
		}
	}
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
