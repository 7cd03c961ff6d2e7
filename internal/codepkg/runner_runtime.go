package codepkg

import (
	"archive/zip"
	"bufio"
	"io"
	"path"
	"strings"
)

// runnerInterpreters maps the program a __runner__.sh line starts with to
// the runtime that provides it.
var runnerInterpreters = map[string]string{
	"node":    "node",
	"nodejs":  "node",
	"ruby":    "ruby",
	"python":  "python",
	"python3": "python",
	"php":     "php",
}

// maxRunnerScript bounds how much of a __runner__.sh is read.
const maxRunnerScript = 64 << 10

// clientRunnerMarker is in the __runner__.sh template of the official
// IronWorker clients (the Node package and the Ruby gem): the library and
// program paths of their __debs__ folder. A script written by hand lacks
// it and names its stack itself.
const clientRunnerMarker = "./__debs__/"

// runnerRuntime reads the __runner__.sh that the official IronWorker
// clients put in a package (uploaded as runtime "sh") and names the
// runtime of the interpreter its last command starts, such as "node" for
// the line `node hello.js`. It returns "" for a script that is not the
// clients' template or starts no known interpreter.
func runnerRuntime(f *zip.File) string {
	rc, err := f.Open()
	if err != nil {
		return ""
	}
	defer rc.Close()
	found, official := "", false
	sc := bufio.NewScanner(io.LimitReader(rc, maxRunnerScript))
	sc.Buffer(make([]byte, 0, 4096), maxRunnerScript)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, clientRunnerMarker) {
			official = true
		}
		if rt := lineRuntime(line); rt != "" {
			found = rt
		}
	}
	if !official {
		return ""
	}
	return found
}

// lineRuntime names the runtime a shell line starts, skipping leading
// VAR=value assignments and `exec`.
func lineRuntime(line string) string {
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "#"):
			return ""
		case w == "exec":
			continue
		case strings.Contains(w, "=") && !strings.HasPrefix(w, "="):
			continue
		}
		return runnerInterpreters[path.Base(w)]
	}
	return ""
}
