package driver

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"regexp"
)

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ContainerName names a task's container so an engine's or runtime's list
// tells which task it runs. The random suffix keeps names unique when a
// task runs again before its old container is gone.
func ContainerName(taskID string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := nameUnsafe.ReplaceAllString(taskID, "_")
	if len(id) > 64 {
		id = id[:64]
	}
	if id == "" {
		id = "task"
	}
	return "mayfly-" + id + "-" + hex.EncodeToString(b[:])
}

// KeepGoing passes writes to w until w fails once, and then drops them,
// always reporting success: a failing log writer must not stop a driver's
// reading of a container's output, or the container would block on a full
// pipe.
func KeepGoing(w io.Writer) io.Writer { return &keepGoing{w: w} }

type keepGoing struct {
	w      io.Writer
	failed bool
}

func (k *keepGoing) Write(p []byte) (int, error) {
	if k.w != nil && !k.failed {
		if _, err := k.w.Write(p); err != nil {
			k.failed = true
		}
	}
	return len(p), nil
}
