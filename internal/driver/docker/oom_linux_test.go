package docker

import "testing"

func TestOOMInControl(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", false},
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", true},
		{"oom_kill_disable 0\nunder_oom 1\noom_kill 0\n", true},
		{"oom_kill_disable 1\nunder_oom 0\n", false}, // kernels before oom_kill
		{"", false},
	} {
		if got := oomInControl([]byte(tc.text)); got != tc.want {
			t.Errorf("oomInControl(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestCgroupLayoutLearnt: an engine with a cgroup parent of its own puts
// containers where no default says; the layout found through one
// container's process is kept for the next, and a path that names the
// container twice (ambiguous) is not learnt.
func TestCgroupLayoutLearnt(t *testing.T) {
	var l cgroupLayout
	l.learn("/sys/fs/cgroup/memory/tenants/a/ctr-abc123.scope", "abc123")
	if l.before != "/sys/fs/cgroup/memory/tenants/a/ctr-" || l.after != ".scope" {
		t.Fatalf("learnt %q + id + %q", l.before, l.after)
	}
	var m cgroupLayout
	m.learn("/sys/fs/cgroup/memory/abc123/abc123", "abc123")
	if m.before != "" || m.after != "" {
		t.Fatalf("learnt an ambiguous layout: %q + id + %q", m.before, m.after)
	}
	if dir := m.guess("abc123"); dir != "" {
		t.Fatalf("guessed %s for a container that does not exist", dir)
	}
}

// TestMemoryCgroupNamesTheContainer: a runner in another pid namespace
// reads some process of its own under the container's pid; a cgroup path
// that does not name the container is refused rather than watched.
func TestMemoryCgroupNamesTheContainer(t *testing.T) {
	if _, err := memoryCgroupV1(1, "0123456789abcdef"); err == nil {
		t.Fatal("took process 1's cgroup for a container's")
	}
}
