//go:build !linux

package stack

import (
	"context"
	"errors"
	"os/exec"
)

// ownProcessGroup leaves cmd as it is: base images are only made on Linux.
func ownProcessGroup(*exec.Cmd) {}

// unmountUnder refuses: without the Linux mount table there is no telling
// whether removing the folder would reach through a mount.
func unmountUnder(string) error {
	return errors.New("base images are made on Linux only")
}

// lockBuild does nothing where there is no flock: concurrent builds of one
// stack then only do the work twice.
func lockBuild(context.Context, string) (func(), error) { return func() {}, nil }
