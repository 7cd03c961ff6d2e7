package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// cpuPeriod is the CFS period the CPU quota is a share of, as Docker sets.
const cpuPeriod = 100_000

// ociSpec is the runtime config of spec's container: the isolation of the
// Docker driver (no network but lo, no capabilities, no new privileges,
// Docker's default seccomp profile, masked /proc paths) and spec's limits.
func (d *Driver) ociSpec(spec driver.Spec, img image, id, rootfs string) (*specs.Spec, error) {
	args, err := commandLine(spec, img.config)
	if err != nil {
		return nil, err
	}
	user := spec.User
	if user == "" {
		user = img.config.User
	}
	uid, gid, sgids, home, err := resolveUser(user, img.lowers)
	if err != nil {
		return nil, err
	}
	cwd := spec.WorkDir
	if cwd == "" {
		cwd = img.config.WorkDir
	}
	if cwd == "" {
		cwd = "/"
	}

	s := &specs.Spec{
		Version: specVersion,
		Root:    &specs.Root{Path: rootfs, Readonly: spec.ReadOnlyRoot},
		Process: &specs.Process{
			User:            specs.User{UID: uint32(uid), GID: uint32(gid), AdditionalGids: sgids},
			Args:            args,
			Env:             environment(img.config.Env, spec.Env, home, id),
			Cwd:             cwd,
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
		},
		Hostname: id[:min(len(id), 63)],
		Mounts:   baseMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			CgroupsPath: "/mayfly/" + id,
			Resources: &specs.LinuxResources{
				// No device but those the runtime makes (null, zero,
				// full, random, urandom, tty).
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	if !spec.Network {
		// A new network namespace has only lo, which the runtime brings
		// up.
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if spec.NoFile > 0 {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: uint64(spec.NoFile), Soft: uint64(spec.NoFile)}}
	}
	res := s.Linux.Resources
	if spec.MemoryBytes > 0 {
		mem := spec.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &mem}
		if d.swapAccounting() {
			// No swap on top: the limit is what the task gets.
			res.Memory.Swap = &mem
		}
	}
	if spec.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: spec.PidsLimit}
	}
	if spec.NanoCPUs > 0 {
		period := uint64(cpuPeriod)
		quota := spec.NanoCPUs * cpuPeriod / 1e9
		res.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}

	uidT, gidT := numericUser(spec.User)
	for _, t := range spec.Tmpfs {
		opts := []string{"rw", "exec", "nosuid", "nodev"}
		if t.SizeBytes > 0 {
			opts = append(opts, "size="+strconv.FormatInt(t.SizeBytes, 10))
		}
		if t.Owned {
			opts = append(opts, "mode=0755", fmt.Sprintf("uid=%d", uidT), fmt.Sprintf("gid=%d", gidT))
		} else {
			opts = append(opts, "mode=1777")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: t.Path, Type: "tmpfs", Source: "tmpfs", Options: opts})
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("mount %s: source is not an absolute host path", m.Source)
		}
		opts := []string{"rbind", "nosuid", "nodev", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: opts})
	}
	prof, err := d.seccompProfile()
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = prof
	return s, nil
}

// seccompProfile is Docker's default profile for a process without
// capabilities, made once (every task's is the same), for the native
// architecture only. Docker's also allows the 32-bit x86 and x32 system
// call tables; the runtime compiles the filter for each table at every
// start (a third of a trivial task's start went there), and a task has no
// use for them that a 64-bit stack does not cover. With them left out a
// 32-bit system call gets the profile's default answer (EPERM): less of
// the kernel within reach, not more.
func (d *Driver) seccompProfile() (*specs.LinuxSeccomp, error) {
	d.seccompOnce.Do(func() {
		prof, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}})
		if err != nil {
			d.seccompErr = fmt.Errorf("seccomp profile: %w", err)
			return
		}
		if len(prof.Architectures) > 0 {
			prof.Architectures = prof.Architectures[:1]
		}
		d.seccomp = prof
	})
	return d.seccomp, d.seccompErr
}

// baseMounts are the file systems every container has, as runc's own
// default spec sets them.
func baseMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// swapAccounting tells whether the memory cgroup can limit swap (cgroup v1
// needs swapaccount=1; the runtime refuses a swap limit otherwise).
func (d *Driver) swapAccounting() bool {
	if d.cgroup2 {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// commandLine is the entrypoint and command of the container, as Docker
// makes it: an entrypoint given drops the image's command too.
func commandLine(spec driver.Spec, cfg imageConfig) ([]string, error) {
	entry, cmd := cfg.Entrypoint, cfg.Cmd
	if spec.Entrypoint != nil {
		entry, cmd = spec.Entrypoint, nil
	}
	if len(spec.Cmd) > 0 {
		cmd = spec.Cmd
	}
	args := append(append([]string{}, entry...), cmd...)
	if len(args) == 0 {
		return nil, errors.New("no command: neither the spec nor the image names one")
	}
	return args, nil
}

// environment is the image's environment with spec's on top, plus what
// Docker adds: PATH when missing, HOSTNAME and HOME.
func environment(image, spec []string, home, host string) []string {
	env := []string{}
	idx := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			env[i] = kv
			return
		}
		idx[k] = len(env)
		env = append(env, kv)
	}
	set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME=" + host[:min(len(host), 63)])
	for _, kv := range image {
		set(kv)
	}
	for _, kv := range spec {
		set(kv)
	}
	if _, ok := idx["HOME"]; !ok {
		set("HOME=" + home)
	}
	return env
}

// numericUser returns the ids of a "uid[:gid]" user, 0 for what is not a
// number.
func numericUser(user string) (uid, gid int) {
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return 0, 0
	}
	if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
		return uid, 0
	}
	return uid, gid
}

// resolveUser turns "user[:group]" into ids, looking names up in the
// image's /etc/passwd and /etc/group (the top layer that has them). As
// with Docker, a user without a group given also gets, as supplementary
// groups, those that /etc/group lists its name in; a group given is the
// only one.
func resolveUser(user string, lowers []string) (uid, gid int, sgids []uint32, home string, err error) {
	home = "/"
	if user == "" {
		return 0, 0, nil, "/root", nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	passwd := readDB(lowers, "etc/passwd")
	name := ""
	if n, err := strconv.Atoi(u); err == nil {
		uid = n
		for _, f := range passwd {
			if len(f) >= 6 && f[2] == u {
				home, name = f[5], f[0]
				gid, _ = strconv.Atoi(f[3])
				break
			}
		}
	} else {
		for _, f := range passwd {
			if len(f) >= 6 && f[0] == u {
				uid, _ = strconv.Atoi(f[2])
				gid, _ = strconv.Atoi(f[3])
				home, name = f[5], f[0]
				break
			}
		}
		if name == "" {
			return 0, 0, nil, "", fmt.Errorf("user %q: no such user in the image", u)
		}
	}
	if !hasGroup {
		if name != "" {
			sgids = memberOf(readDB(lowers, "etc/group"), name, gid)
		}
		return uid, gid, sgids, home, nil
	}
	if n, err := strconv.Atoi(g); err == nil {
		return uid, n, nil, home, nil
	}
	for _, f := range readDB(lowers, "etc/group") {
		if len(f) >= 3 && f[0] == g {
			gid, _ = strconv.Atoi(f[2])
			return uid, gid, nil, home, nil
		}
	}
	return 0, 0, nil, "", fmt.Errorf("group %q: no such group in the image", g)
}

// memberOf returns the ids of the groups of an /etc/group that list name
// as a member, without primary and without repeats.
func memberOf(groups [][]string, name string, primary int) []uint32 {
	var out []uint32
	seen := map[int]bool{primary: true}
	for _, f := range groups {
		if len(f) < 4 {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || id < 0 || seen[id] {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == name {
				seen[id] = true
				out = append(out, uint32(id))
				break
			}
		}
	}
	return out
}

// readDB reads a colon-separated file from the top layer that has it.
func readDB(lowers []string, name string) [][]string {
	for _, l := range lowers {
		root, err := os.OpenRoot(l)
		if err != nil {
			continue
		}
		f, err := root.Open(name)
		root.Close()
		if err != nil {
			continue
		}
		defer f.Close()
		var out [][]string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			out = append(out, strings.Split(sc.Text(), ":"))
		}
		return out
	}
	return nil
}

// SandboxConfig is the runtime config the driver would start spec's
// container with, on rootfs instead of a bundle's overlay mount. The
// benchmark runs the bare runtime on it, to tell the sandbox's cost from
// the driver's and the runner's.
func (d *Driver) SandboxConfig(ctx context.Context, spec driver.Spec, rootfs string) (*specs.Spec, error) {
	img, err := d.resolve(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	return d.ociSpec(spec, img, driver.ContainerName(spec.TaskID), rootfs)
}
