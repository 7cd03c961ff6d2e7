//go:build !linux

package assembly

func isMemoryFS(string) bool { return false }

func ownedDir(string) bool { return false }
