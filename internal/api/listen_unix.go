//go:build unix

package api

import "syscall"

// fileLimit is the process's open-file limit (Go raises the soft limit to
// the hard one at start).
func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1 << 30
	}
	return int(rl.Cur)
}
