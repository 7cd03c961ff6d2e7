//go:build !linux

package docker

// oomWatch is Linux's; elsewhere the engine's flag is all there is.
type oomWatch struct{}

func watchOOM(*Driver, string) *oomWatch { return nil }

type cgroupLayout struct{}

func (w *oomWatch) killed() bool { return false }

func (w *oomWatch) release() {}

func canWatchOOM() bool { return false }
