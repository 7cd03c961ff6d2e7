package driver

import (
	"strconv"
	"strings"
)

// CgroupValue is key's number in a cgroup file of "key value" lines
// (memory.events, memory.oom_control), 0 when it has none: how the drivers
// that watch a container's cgroup read its OOM counts.
func CgroupValue(data []byte, key string) int64 {
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
