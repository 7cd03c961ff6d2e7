package assembly

import (
	"os"
	"syscall"
)

func isMemoryFS(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && st.Type == 0x01021994 // TMPFS_MAGIC
}

// ownedDir reports whether path is a directory (not a link to one) owned
// by this process's user and closed to everyone else.
func ownedDir(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
