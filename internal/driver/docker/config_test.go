package docker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

func TestContainerConfig(t *testing.T) {
	t.Parallel()
	spec := driver.Spec{
		TaskID: "t1", RunnerID: "r1", Image: "img", Cmd: []string{"run"},
		Env: []string{"A=1"}, WorkDir: "/mnt/task", User: "65534:65534",
		MemoryBytes: 1 << 20, PidsLimit: 5, NanoCPUs: 5e8,
		Labels: map[string]string{"x": "y", driver.LabelManaged: "false"},
		Output: io.Discard,
	}
	cfg, host := containerConfig(spec)
	if cfg.Image != "img" || !slices.Equal(cfg.Cmd, []string{"run"}) || cfg.Entrypoint != nil ||
		cfg.WorkingDir != "/mnt/task" || cfg.User != "65534:65534" || !slices.Equal(cfg.Env, []string{"A=1"}) {
		t.Errorf("config %+v", cfg)
	}
	if cfg.Tty || cfg.OpenStdin || cfg.StopSignal != "SIGTERM" {
		t.Errorf("tty %v, stdin %v, stop signal %q", cfg.Tty, cfg.OpenStdin, cfg.StopSignal)
	}
	wantLabels := map[string]string{"x": "y", driver.LabelManaged: "true", driver.LabelRunner: "r1", driver.LabelTask: "t1"}
	if len(cfg.Labels) != len(wantLabels) {
		t.Errorf("labels %v, want %v", cfg.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if spec.Labels[driver.LabelManaged] != "false" {
		t.Errorf("the spec's labels were modified")
	}
	if host.NetworkMode != "none" || !slices.Equal(host.CapDrop, []string{"ALL"}) ||
		!slices.Equal(host.SecurityOpt, []string{"no-new-privileges"}) || host.LogConfig.Type != "none" || host.AutoRemove {
		t.Errorf("host config %+v", host)
	}
	if host.Memory != 1<<20 || host.MemorySwap != 1<<20 || host.PidsLimit == nil || *host.PidsLimit != 5 || host.NanoCPUs != 5e8 {
		t.Errorf("limits: memory %d swap %d pids %v cpus %d", host.Memory, host.MemorySwap, host.PidsLimit, host.NanoCPUs)
	}

	if host.ReadonlyRootfs || host.Tmpfs != nil || host.Ulimits != nil {
		t.Errorf("sandbox options not asked for: read-only %v, tmpfs %v, ulimits %v", host.ReadonlyRootfs, host.Tmpfs, host.Ulimits)
	}

	sandboxed := spec
	sandboxed.ReadOnlyRoot, sandboxed.NoFile = true, 1024
	sandboxed.Tmpfs = []driver.Tmpfs{{Path: "/tmp", SizeBytes: 8 << 20}, {Path: "/mnt/task", SizeBytes: 4 << 20, Owned: true}}
	_, host = containerConfig(sandboxed)
	if !host.ReadonlyRootfs {
		t.Errorf("root file system not read-only")
	}
	if len(host.Ulimits) != 1 || host.Ulimits[0].Name != "nofile" || host.Ulimits[0].Soft != 1024 || host.Ulimits[0].Hard != 1024 {
		t.Errorf("ulimits %+v, want nofile 1024", host.Ulimits)
	}
	wantTmpfs := map[string]string{
		"/tmp":      "rw,exec,nosuid,nodev,size=8388608,mode=1777",
		"/mnt/task": "rw,exec,nosuid,nodev,size=4194304,mode=0755,uid=65534,gid=65534",
	}
	if len(host.Tmpfs) != len(wantTmpfs) {
		t.Errorf("tmpfs %v, want %v", host.Tmpfs, wantTmpfs)
	}
	for k, v := range wantTmpfs {
		if host.Tmpfs[k] != v {
			t.Errorf("tmpfs %s = %q, want %q", k, host.Tmpfs[k], v)
		}
	}

	spec.Network, spec.MemoryBytes, spec.PidsLimit = true, 0, 0
	spec.Entrypoint = []string{}
	cfg, host = containerConfig(spec)
	if host.NetworkMode != "" || host.Memory != 0 || host.MemorySwap != 0 || host.PidsLimit != nil {
		t.Errorf("network/unlimited: %+v", host)
	}
	if cfg.Entrypoint == nil || len(cfg.Entrypoint) != 0 {
		t.Errorf("empty entrypoint became %#v; want empty, not nil", cfg.Entrypoint)
	}
}

func TestStopTimeout(t *testing.T) {
	t.Parallel()
	for grace, want := range map[time.Duration]int{
		-time.Second: 0, 0: 0, time.Millisecond: 1, time.Second: 1,
		1500 * time.Millisecond: 2, 10 * time.Second: 10,
	} {
		if got := stopTimeout(grace); got != want {
			t.Errorf("stopTimeout(%v) = %d, want %d", grace, got, want)
		}
	}
}

func TestNumericUser(t *testing.T) {
	t.Parallel()
	for user, want := range map[string][2]int{
		"": {0, 0}, "65534:65534": {65534, 65534}, "1000": {1000, 0},
		"1000:users": {1000, 0}, "nobody": {0, 0}, "-1:-1": {0, 0},
	} {
		if uid, gid := numericUser(user); uid != want[0] || gid != want[1] {
			t.Errorf("numericUser(%q) = %d, %d; want %v", user, uid, gid, want)
		}
	}
}

func TestContainerName(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	for _, id := range []string{"6b084834bb374b04c61b97f1", "", "a/b c", strings.Repeat("x", 300)} {
		name := driver.ContainerName(id)
		if !valid.MatchString(name) || len(name) > 100 {
			t.Errorf("ContainerName(%q) = %q, not a valid container name", id, name)
		}
	}
	if a, b := driver.ContainerName("t"), driver.ContainerName("t"); a == b {
		t.Errorf("two containers of one task got the same name")
	}
}

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out = append(out, tarEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, string(body)})
	}
}

func TestWriteTarMergesArchiveAndFiles(t *testing.T) {
	t.Parallel()
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	long := "mnt/task/" + strings.Repeat("d", 120) + "/file" // beyond ustar's 100 bytes
	for _, e := range []tarEntry{
		{"mnt/task/", tar.TypeDir, 0o755, 65534, 65534, ""},
		{"mnt/task/code.sh", tar.TypeReg, 0o755, 1, 2, "echo hi\n"},
		{long, tar.TypeReg, 0o600, 0, 0, "x"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(e.body))
	}
	_ = tw.Close()
	files := []driver.File{
		{Path: "/mnt/task/payload.json", Data: []byte("{}")},
		{Path: "/mnt/task/out/"},
		{Path: "/mnt/task/cfg", Dir: true, Mode: 0o700},
	}
	want := []tarEntry{
		{"mnt/task/", tar.TypeDir, 0o755, 65534, 65534, ""},
		{"mnt/task/code.sh", tar.TypeReg, 0o755, 1, 2, "echo hi\n"},
		{long, tar.TypeReg, 0o600, 0, 0, "x"},
		{"mnt/task/payload.json", tar.TypeReg, 0o644, 7, 8, "{}"},
		{"mnt/task/out/", tar.TypeDir, 0o755, 7, 8, ""},
		{"mnt/task/cfg/", tar.TypeDir, 0o700, 7, 8, ""},
	}

	plain := archive.Bytes()
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	for name, in := range map[string][]byte{"plain": plain, "gzip": zipped.Bytes()} {
		var out bytes.Buffer
		if err := writeTar(&out, bytes.NewReader(in), files, 7, 8); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := readTar(t, &out); !slices.Equal(got, want) {
			t.Errorf("%s: merged tar\n%+v\nwant\n%+v", name, got, want)
		}
	}

	var out bytes.Buffer
	if err := writeTar(&out, nil, files[:1], 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := readTar(t, &out); len(got) != 1 || got[0].name != "mnt/task/payload.json" {
		t.Errorf("files only: %+v", got)
	}
	for _, bad := range []string{"relative/path", "/"} {
		if err := writeTar(io.Discard, nil, []driver.File{{Path: bad}}, 0, 0); err == nil {
			t.Errorf("file path %q accepted", bad)
		}
	}
	if err := writeTar(io.Discard, strings.NewReader("not a tar at all, not at all, no"), nil, 0, 0); err == nil {
		t.Errorf("a broken archive was accepted")
	}
}

// TestResolveArgv: the command a warm container's launcher runs is the one
// the engine would have run for a container created for the task.
func TestResolveArgv(t *testing.T) {
	t.Parallel()
	img := imageInfo{entrypoint: []string{"/entry"}, cmd: []string{"default"}}
	for _, tc := range []struct {
		name    string
		ep, cmd []string
		want    []string
	}{
		{"image's own", nil, nil, []string{"/entry", "default"}},
		{"command after the image's entrypoint", nil, []string{"run", "x"}, []string{"/entry", "run", "x"}},
		{"entrypoint cleared, command alone", []string{}, []string{"sh", "-c", "true"}, []string{"sh", "-c", "true"}},
		{"entrypoint cleared, image's command", []string{}, nil, []string{"default"}},
		{"own entrypoint drops the image's command", []string{"/other"}, nil, []string{"/other"}},
		{"own entrypoint and command", []string{"/other", "-v"}, []string{"a"}, []string{"/other", "-v", "a"}},
	} {
		got := resolveArgv(driver.Spec{Entrypoint: tc.ep, Cmd: tc.cmd}, img)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := resolveArgv(driver.Spec{}, imageInfo{}); len(got) != 0 {
		t.Errorf("nothing to run resolved to %q", got)
	}
}

// TestShapeKey: tasks that differ only in what comes in at start share a
// shape; anything fixed at create does not.
func TestShapeKey(t *testing.T) {
	t.Parallel()
	base := driver.Spec{TaskID: "a", RunnerID: "r", Image: "img", User: "1:1", WorkDir: "/w",
		Mounts: []driver.Mount{{Source: "/run/a", Target: "/mnt/mayfly", ReadOnly: true}}, MemoryBytes: 1 << 20,
		Tmpfs: []driver.Tmpfs{{Path: "/tmp", SizeBytes: 1}}}
	other := base
	other.TaskID, other.Cmd, other.Env, other.Labels = "b", []string{"x"}, []string{"A=1"}, map[string]string{"k": "v"}
	other.Mounts = []driver.Mount{{Source: "/run/b", Target: "/mnt/mayfly", ReadOnly: true}}
	other.Output = io.Discard
	if shapeKey(base) != shapeKey(other) {
		t.Errorf("per-task parts changed the shape")
	}
	for name, change := range map[string]func(*driver.Spec){
		"image":     func(s *driver.Spec) { s.Image = "img2" },
		"runner":    func(s *driver.Spec) { s.RunnerID = "r2" },
		"user":      func(s *driver.Spec) { s.User = "2:2" },
		"workdir":   func(s *driver.Spec) { s.WorkDir = "/x" },
		"memory":    func(s *driver.Spec) { s.MemoryBytes = 2 << 20 },
		"tmpfs":     func(s *driver.Spec) { s.Tmpfs = []driver.Tmpfs{{Path: "/tmp", SizeBytes: 2}} },
		"network":   func(s *driver.Spec) { s.Network = true },
		"read-only": func(s *driver.Spec) { s.ReadOnlyRoot = true },
		"target":    func(s *driver.Spec) { s.Mounts = []driver.Mount{{Source: "/run/a", Target: "/other", ReadOnly: true}} },
		"writable":  func(s *driver.Spec) { s.Mounts = []driver.Mount{{Source: "/run/a", Target: "/mnt/mayfly"}} },
	} {
		s := base
		change(&s)
		if shapeKey(s) == shapeKey(base) {
			t.Errorf("a different %s kept the shape", name)
		}
	}
	rel := base
	rel.Mounts = []driver.Mount{{Source: "run/a", Target: "/m"}}
	if shapeKey(rel) != "" {
		t.Errorf("a relative mount source can run warm")
	}
}
