package docker

// IgnoreEngineOOM makes d disregard the engine's OOM flag, leaving only
// its own watch of the container's cgroup.
func IgnoreEngineOOM(d *Driver) { d.engineOOMIgnored = true }

// OOMWatchUnsupported says why the driver's OOM watch cannot work on this
// machine, or "" when it can.
func OOMWatchUnsupported() string {
	if !canWatchOOM() {
		return "it needs root and cgroup v1's memory controller"
	}
	return ""
}
