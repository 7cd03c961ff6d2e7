// Package id makes the identifiers Mayfly hands out: 24 lowercase hex
// characters, as IronWorker's ids are (clients check the length). They are
// laid out like ObjectIds: the creation second, five random bytes fixed per
// process, and a counter, so ids made by one process sort in the order they
// were made (a batch of tasks lists in queue order) and index inserts land
// mostly at the end.
package id

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"sync/atomic"
	"time"
)

var valid = regexp.MustCompile(`^[0-9a-f]{24}$`)

// New returns a fresh id.
func New() string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(time.Now().Unix()))
	copy(b[4:9], processBytes[:])
	n := counter.Add(1)
	b[9], b[10], b[11] = byte(n>>16), byte(n>>8), byte(n)
	return hex.EncodeToString(b[:])
}

var (
	processBytes [5]byte
	counter      atomic.Uint32
)

func init() {
	var seed [4]byte
	if _, err := rand.Read(processBytes[:]); err != nil {
		panic("id: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	rand.Read(seed[:])
	counter.Store(binary.BigEndian.Uint32(seed[:]) & 0xffffff)
}

// Valid reports whether s has the form of an id.
func Valid(s string) bool { return valid.MatchString(s) }

// Secret returns a random token secret of n bytes, hex encoded.
func Secret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("id: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}
