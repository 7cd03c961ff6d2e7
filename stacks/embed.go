// Package stacks carries the recipe of every stack (the base images tasks run
// on), one folder per stack, inside the binary, so that `mayfly stack build`
// works on a machine that has only the binary and Docker.
package stacks

import (
	"embed"
	"io/fs"
)

// Every file one level down: a stack folder holds its Dockerfile, its
// stack.json and whatever else its recipe needs.
//
//go:embed */*
var recipes embed.FS

// FS returns the stack folders, each at NAME/ at the root.
func FS() fs.FS { return recipes }
