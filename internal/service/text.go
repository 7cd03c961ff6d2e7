package service

import (
	"strings"
)

// Text a request names (labels, clusters, names, commands, config) is
// stored as text, and PostgreSQL's text holds no NUL character: refuse one
// with a clear 400 rather than fail the write. A payload is bytes and may
// hold anything.
func checkText(fields map[string]string) error {
	for name, v := range fields {
		if strings.ContainsRune(v, 0) {
			return errorf(ErrInvalid, "%s must not contain NUL characters", name)
		}
	}
	return nil
}

// cleanText makes text a runner or a task reports (a msg, the tail of
// stderr) storable: valid UTF-8 without NUL, whatever bytes the task wrote.
func cleanText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}
