package docker

import "os"

// IgnoreEngineOOM makes d disregard the engine's OOM flag, leaving only
// its own watch of the container's cgroup.
func IgnoreEngineOOM(d *Driver) { d.engineOOMIgnored = true }

// OOMWatchUnsupported says why the driver's OOM watch cannot work on this
// machine, or "" when it can.
func OOMWatchUnsupported() string {
	if os.Geteuid() != 0 {
		return "not root: the cgroup's event_control is root's"
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		return "no cgroup v1 memory controller: " + err.Error()
	}
	return ""
}
