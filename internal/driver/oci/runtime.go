package oci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specVersion is the runtime-spec version of the configs written: the
// newest both runtimes of Debian's stable accept (crun takes only 1.0.x),
// and nothing the driver sets is newer.
const specVersion = "1.0.2"

// probeTimeout bounds the trial container a runtime must create at start.
const probeTimeout = 20 * time.Second

// chooseRuntime returns the runtime to start containers with. One that is
// named is taken if its trial container works (else the error says why, at
// start rather than at the first task). Otherwise crun,
// which starts a container in a fraction of runc's time, is taken when it
// is on PATH and creates a trial container here: crun refuses cgroup
// set-ups it does not support (a hybrid v1/v2 host with controllers on the
// v2 side), and that is only learnt by trying. Else runc.
func chooseRuntime(ctx context.Context, named, dir string, log *slog.Logger) (string, error) {
	if named != "" {
		path, err := exec.LookPath(named)
		if err != nil {
			return "", fmt.Errorf("runtime %s: %w", named, err)
		}
		if err := probeRuntime(ctx, path, dir); err != nil {
			return "", err
		}
		return path, nil
	}
	if path, err := exec.LookPath("crun"); err == nil {
		err := probeRuntime(ctx, path, dir)
		if err == nil {
			return path, nil
		}
		log.Info("crun cannot start containers on this host's cgroup set-up; using runc", "err", err)
	}
	path, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("no OCI runtime: neither crun nor runc is on PATH: %w", err)
	}
	return path, nil
}

// probeRuntime creates (and never starts) a container with a cgroup and
// namespaces as a task's, on an empty root file system, and deletes it:
// what fails on a host the runtime does not support fails there, before a
// task's start does.
func probeRuntime(ctx context.Context, path, dir string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	bdir, err := os.MkdirTemp(filepath.Join(dir, "tmp"), "probe-")
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	lock, err := lockDir(bdir, true)
	if err != nil {
		os.RemoveAll(bdir)
		return fmt.Errorf("probe %s: %w", path, err)
	}
	defer lock.Close()
	defer os.RemoveAll(bdir)
	if err := os.MkdirAll(filepath.Join(bdir, "rootfs", "proc"), 0o755); err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	// runc looks the command up at create: the runtime's own binary,
	// bound read-only, is one that exists (it is never started).
	if err := os.WriteFile(filepath.Join(bdir, "rootfs", "probe"), nil, 0o755); err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	id := "mayfly-probe-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pids := int64(4)
	s := &specs.Spec{
		Version: specVersion,
		Root:    &specs.Root{Path: filepath.Join(bdir, "rootfs"), Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/probe", Type: "bind", Source: path, Options: []string{"bind", "ro", "nosuid", "nodev"}},
		},
		Process: &specs.Process{Args: []string{"/probe"}, Cwd: "/", Capabilities: &specs.LinuxCapabilities{}, NoNewPrivileges: true},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}},
			CgroupsPath: "/mayfly/" + id,
			Resources:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: pids}},
		},
	}
	if err := writeJSON(filepath.Join(bdir, "config.json"), s); err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	state := filepath.Join(dir, "state")
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, path, append([]string{"--root", state}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// The trial's init holds the stdio it was given until it is deleted:
	// its errors go to a file, so that nothing waits for a pipe's end.
	errFile, err := os.Create(filepath.Join(bdir, "stderr"))
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	defer errFile.Close()
	create := exec.CommandContext(ctx, path, "--root", state, "create", "--bundle", bdir, id)
	create.Stderr = errFile
	cerr := create.Run()
	msg, _ := os.ReadFile(errFile.Name())
	out := strings.TrimSpace(string(msg))
	if dout, derr := run("delete", "--force", id); derr != nil && cerr == nil {
		err = fmt.Errorf("probe %s: delete its trial container: %w: %s", path, derr, dout)
	}
	if cerr != nil {
		return errors.Join(fmt.Errorf("probe %s: create a trial container: %w: %s", path, cerr, out), err)
	}
	return err
}
