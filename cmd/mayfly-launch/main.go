// Command mayfly-launch is the first program of the docker driver's warm
// containers (mayfly runner --warm-containers): it reads the task's command
// and environment from a file and execs the task's program. Build it
// static (CGO_ENABLED=0), as `make build` does: it runs inside task images,
// which may have no libc.
package main

import (
	"os"

	"github.com/mayfly-run/mayfly/internal/launch"
)

func main() { os.Exit(launch.Main()) }
