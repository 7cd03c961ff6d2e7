package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine is what the figures were measured on; ratios travel between
// machines better than times do, but not without this.
type Machine struct {
	CPUs          int    `json:"cpus"`
	CPUModel      string `json:"cpu_model,omitempty"`
	MemoryMiB     int64  `json:"memory_mib,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	OS            string `json:"os"`
	Go            string `json:"go"`
	DockerVersion string `json:"docker_version,omitempty"`
	DockerAPI     string `json:"docker_api,omitempty"`
	StorageDriver string `json:"storage_driver,omitempty"`
}

// DescribeMachine reads what it can; a missing piece is left empty rather
// than failing a run over a description.
func DescribeMachine(ctx context.Context, docker string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.MemoryMiB = kb / 1024
		}
	}
	if docker == "" {
		docker, _ = exec.LookPath("docker")
	}
	if docker != "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, docker, "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}").Output()
		if err == nil {
			f := strings.Fields(string(out))
			if len(f) == 2 {
				m.DockerVersion, m.DockerAPI = f[0], f[1]
			}
		}
		out, err = exec.CommandContext(ctx, docker, "info", "--format", "{{.Driver}}").Output()
		if err == nil {
			m.StorageDriver = strings.TrimSpace(string(out))
		}
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file whose key is key.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the first three fields of /proc/loadavg, or "" where there is
// none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
