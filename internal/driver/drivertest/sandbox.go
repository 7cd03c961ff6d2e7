package drivertest

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// The sandbox every task runs in, as a runner asks for it. The conformance
// tests check it from inside the container, so what they prove is what a
// task sees, whatever the driver does to get there.
const (
	sandboxMemory  = 64 << 20
	sandboxPids    = 64
	sandboxCPUs    = 500_000_000 // half a core
	sandboxNoFile  = 256
	sandboxTmpMB   = 8
	sandboxTaskMB  = 4
	sandboxTaskDir = "/mnt/task"
)

// sandbox is spec with the runner's isolation: read-only root, capped
// /tmp and task directory, CPU, memory, pids and open-file limits.
func (b *bundle) sandbox(spec driver.Spec) driver.Spec {
	spec.ReadOnlyRoot = true
	spec.MemoryBytes = sandboxMemory
	spec.PidsLimit = sandboxPids
	spec.NanoCPUs = sandboxCPUs
	spec.NoFile = sandboxNoFile
	spec.Tmpfs = []driver.Tmpfs{
		{Path: "/tmp", SizeBytes: sandboxTmpMB << 20},
		{Path: sandboxTaskDir, SizeBytes: sandboxTaskMB << 20, Owned: true},
	}
	spec.WorkDir = sandboxTaskDir
	return spec
}

// sandboxProbe prints what a task can tell about its confinement as
// key=value lines. It needs nothing but BusyBox.
const sandboxProbe = `
for k in CapEff CapPrm CapBnd NoNewPrivs Seccomp; do
  echo "$k=$(awk -v k="$k:" '$1 == k { print $2 }' /proc/self/status)"
done
echo "uid=$(id -u)"
echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')"
echo "nofile=$(ulimit -n)"
echo "nofile_hard=$(ulimit -Hn)"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  echo "cgroup=2"
  echo "cpu=$(cat /sys/fs/cgroup/cpu.max)"
  echo "memory=$(cat /sys/fs/cgroup/memory.max)"
  echo "pids=$(cat /sys/fs/cgroup/pids.max)"
else
  echo "cgroup=1"
  echo "cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
  echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
  echo "pids=$(cat /sys/fs/cgroup/pids/pids.max)"
fi
for d in / /etc /usr /mnt; do
  if touch "$d/probe" 2>/dev/null; then echo "write $d=ok"; else echo "write $d=refused"; fi
done
echo "pwd=$(pwd)"
for d in /tmp /mnt/task; do
  if echo x >"$d/probe"; then w=ok; else w=refused; fi
  rm -f "$d/probe"
  err=$(dd if=/dev/zero of="$d/fill" bs=1M count=64 2>&1 >/dev/null)
  case "$err" in *"No space left"*) e=enospc ;; *) e="no-error" ;; esac
  echo "fill $d=$w $e $(( $(stat -c %s "$d/fill") >> 20 ))"
  rm -f "$d/fill"
done
`

func testSandbox(t *testing.T, b *bundle) {
	out := b.runOK(b.sandbox(b.sh(sandboxProbe)))
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = strings.TrimSpace(v)
	}
	t.Logf("probe:\n%s", out)
	want := map[string]string{
		"CapEff":      "0000000000000000",
		"CapPrm":      "0000000000000000",
		"CapBnd":      "0000000000000000",
		"NoNewPrivs":  "1",
		"Seccomp":     "2", // a filter, not just strict mode or none
		"uid":         "65534",
		"ifaces":      "lo",
		"nofile":      strconv.Itoa(sandboxNoFile),
		"nofile_hard": strconv.Itoa(sandboxNoFile),
		"pids":        strconv.Itoa(sandboxPids),
		"memory":      strconv.Itoa(sandboxMemory),
		"write /":     "refused",
		"write /etc":  "refused",
		"write /usr":  "refused",
		"write /mnt":  "refused",
		"pwd":         sandboxTaskDir,
		// Writable, and full at the cap (dd counts whole MiB written).
		"fill /tmp":      "ok enospc " + strconv.Itoa(sandboxTmpMB),
		"fill /mnt/task": "ok enospc " + strconv.Itoa(sandboxTaskMB),
	}
	// Half a core: quota/period of 1/2, in whatever period the driver set.
	var quota, period int64
	switch got["cgroup"] {
	case "1":
		f := strings.Fields(got["cpu"])
		if len(f) == 2 {
			quota, _ = strconv.ParseInt(f[0], 10, 64)
			period, _ = strconv.ParseInt(f[1], 10, 64)
		}
	case "2":
		f := strings.Fields(got["cpu"])
		if len(f) == 2 && f[0] != "max" {
			quota, _ = strconv.ParseInt(f[0], 10, 64)
			period, _ = strconv.ParseInt(f[1], 10, 64)
		}
	default:
		t.Errorf("cgroup version not found; output:\n%s", out)
	}
	if period <= 0 || quota*1e9/period != sandboxCPUs {
		t.Errorf("cpu limit %q, want quota/period = %d/1e9 of a core", got["cpu"], sandboxCPUs)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// testSandboxDiskFill is the attack: a task writes a GiB wherever it can.
// Every write must stop at a cap, and the host's disk must not fill.
func testSandboxDiskFill(t *testing.T, b *bundle) {
	const attackMB = 1024
	before, beforeOK := hostFree()
	spec := b.sandbox(b.sh(`for d in / /tmp /mnt/task /mnt /etc; do
  err=$(dd if=/dev/zero of="$d/fill" bs=1M count=` + strconv.Itoa(attackMB) + ` 2>&1 >/dev/null)
  n=0; [ -f "$d/fill" ] && n=$(( $(stat -c %s "$d/fill") >> 20 ))
  case "$err" in *"No space left"*) e=enospc ;; *"Read-only"*) e=readonly ;; *) e="$err" ;; esac
  echo "$d $e $n"
done`))
	out := b.runOK(spec)
	after, afterOK := hostFree()
	want := "/ readonly 0\n/tmp enospc 8\n/mnt/task enospc 4\n/mnt readonly 0\n/etc readonly 0\n"
	if out != want {
		t.Errorf("writes of %d MiB:\n%s\nwant:\n%s", attackMB, out, want)
	}
	// Other tests write meanwhile; the attack alone would take a GiB.
	if beforeOK && afterOK && before-after > attackMB/2<<20 {
		t.Errorf("host disk lost %d MiB during the attack", (before-after)>>20)
	}
}

// hostFree is the free space of the file system holding /, where a local
// engine keeps its containers; it says nothing of a remote engine.
func hostFree() (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/", &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * st.Bsize, true
}

// testSandboxForkBomb: a fork bomb hits the pids limit, stops on Stop, and
// a task next to it starts and ends as usual meanwhile.
func testSandboxForkBomb(t *testing.T, b *bundle) {
	var out syncBuffer
	spec := b.sandbox(b.sh(`echo armed; bomb() { bomb | bomb & }; bomb; exec sleep 600`))
	spec.Output = &out
	bomb := b.start(spec)
	out.waitFor(t, "armed\n")
	time.Sleep(2 * time.Second) // let it fill its pids

	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	t0 := time.Now()
	neighbour := b.sandbox(b.sh(`i=0; while [ $i -lt 20 ]; do sleep 0 & i=$((i+1)); done; wait; echo alive`))
	if got := b.runOK(neighbour); got != "alive\n" {
		t.Errorf("task next to the fork bomb: output %q, want alive", got)
	}
	if d := time.Since(t0); d > time.Minute {
		t.Errorf("a task next to the fork bomb took %v", d)
	}
	if err := bomb.Stop(ctx, 0); err != nil {
		t.Fatalf("stop the fork bomb: %v", err)
	}
	res := b.wait(bomb)
	if res.ExitCode == 0 {
		t.Errorf("fork bomb ended with exit code 0")
	}
	if !strings.Contains(out.String(), "fork") {
		t.Logf("fork bomb output (no fork failure seen): %.500q", out.String())
	}
}

// testSandboxOOM: a process that is not the container's first still ends
// the container as OOM-killed, so the runner can say why.
func testSandboxOOM(t *testing.T, b *bundle) {
	spec := b.sandbox(b.sh(`awk 'BEGIN { s = "x"; while (1) s = s s }'; echo "awk ended $?"; exit 3`))
	res, out, _ := b.run(spec)
	if !res.OOMKilled {
		t.Errorf("OOMKilled not set after a child ran out of memory; exit %d, output:\n%s", res.ExitCode, out)
	}
}

// testSandboxTmpfsIsMemory: what a task writes to its tmpfs counts
// against its memory, so a tmpfs cap above the memory limit ends in an
// OOM kill rather than in more memory.
func testSandboxTmpfsIsMemory(t *testing.T, b *bundle) {
	spec := b.sandbox(b.sh(`dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; echo "dd ended $?"; cat /tmp/fill >/dev/null; sleep 1`))
	spec.Tmpfs[0].SizeBytes = 256 << 20
	res, out, _ := b.run(spec)
	if !res.OOMKilled && !strings.Contains(out, "No space left") {
		t.Errorf("wrote 200 MiB to a tmpfs under a %d MiB memory limit: neither OOM nor ENOSPC; exit %d, output:\n%s",
			sandboxMemory>>20, res.ExitCode, out)
	}
}
