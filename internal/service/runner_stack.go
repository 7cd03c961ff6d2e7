package service

import (
	"slices"

	"github.com/mayfly-run/mayfly/internal/codepkg"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// runnerStack picks the stack of a package made by the official IronWorker
// clients: runtime "sh" (or none), no stack, and their __runner__.sh whose
// last command starts the real interpreter, such as `node hello.js`. Such a
// package needs the interpreter's stack, not busybox, and the clients have
// no way to name one. An upload that names its stack keeps it.
func (s *Service) runnerStack(up wire.CodeUpload, info codepkg.Info) (string, bool) {
	if up.Stack != "" || up.Image != "" || (up.Runtime != "" && up.Runtime != "sh") || info.RunnerRuntime == "" {
		return "", false
	}
	st, ok := runtimeStacks[info.RunnerRuntime]
	if !ok {
		return "", false
	}
	if resolved, ok := stack.Resolve(st); ok {
		st = resolved
	}
	if len(s.cfg.KnownStacks) > 0 && !slices.Contains(s.cfg.KnownStacks, st) {
		return "", false
	}
	return st, true
}
