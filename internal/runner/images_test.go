package runner_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// buildImage builds a throw-away image from a Dockerfile on the local
// stack image (nothing is pulled) and removes it when the test ends.
func buildImage(t *testing.T, base, dockerfile string) string {
	t.Helper()
	ref := "mayfly-test/image-code:" + id.New()
	cmd := exec.Command("docker", "build", "-q", "-t", ref, "-")
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	cmd.Stdin = strings.NewReader("FROM " + base + "\n" + dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref).Run() })
	return ref
}

// TestImageCode runs a code that is an image: its own command, then one
// given by the code, with the same payload and environment contract.
func TestImageCode(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 2)
	ref := buildImage(t, b.stackImage("busybox"),
		`CMD ["sh", "-c", "echo \"image says $(cat $PAYLOAD_FILE) to $TASK_ID from $(pwd)\""]`+"\n")
	ctx := context.Background()
	if _, err := b.svc.UploadCode(ctx, b.project, wire.CodeUpload{Name: "own", Image: ref}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.UploadCode(ctx, b.project, wire.CodeUpload{Name: "told", Image: ref, Command: `echo "told $1 $2"`}, nil); err != nil {
		t.Fatal(err)
	}
	ids := b.queue(wire.NewTask{CodeName: "own", Payload: "hello"}, wire.NewTask{CodeName: "told"})
	if tk := b.waitEnd(ids[0]); tk.Status != store.StatusComplete {
		t.Fatalf("own command: %s %q", tk.Status, tk.Msg)
	}
	if log, want := b.log(ids[0]), "image says hello to "+ids[0]+" from /mnt/task\n"; log != want {
		t.Fatalf("own command log %q, want %q", log, want)
	}
	if tk := b.waitEnd(ids[1]); tk.Status != store.StatusComplete || b.log(ids[1]) != "told -d /mnt/task\n" {
		t.Fatalf("code's command: %s %q log %q", tk.Status, tk.Msg, b.log(ids[1]))
	}
}

// TestOldRevisionImagesRemoved: a new revision's image replaces the old
// one on the runner.
func TestOldRevisionImagesRemoved(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("versions", wire.CodeUpload{Command: `cat v.txt`}, map[string]string{"v.txt": "one"})
	first := b.queue(wire.NewTask{CodeName: "versions"})[0]
	if tk := b.waitEnd(first); tk.Status != store.StatusComplete || b.log(first) != "one" {
		t.Fatalf("rev 1: %s log %q", tk.Status, b.log(first))
	}
	b.push("versions", wire.CodeUpload{Command: `cat v.txt`}, map[string]string{"v.txt": "two"})
	second := b.queue(wire.NewTask{CodeName: "versions"})[0]
	tk := b.waitEnd(second)
	if tk.Status != store.StatusComplete || b.log(second) != "two" {
		t.Fatalf("rev 2: %s log %q", tk.Status, b.log(second))
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := exec.Command("docker", "images", "-q", "--filter", "label=io.mayfly.code-id="+tk.CodeID).Output()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Fields(string(out))); n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d code images of the code remain, want 1", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOrderAndDelay: with one slot, higher priority runs first, and a
// delayed task starts no earlier than it is due.
func TestOrderAndDelay(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("gate", wire.CodeUpload{Command: `sleep 2`}, map[string]string{"x": ""})
	b.push("order", wire.CodeUpload{Command: `read s _ < /proc/uptime; echo $s`}, map[string]string{"x": ""})
	gate := b.queue(wire.NewTask{CodeName: "gate"})[0]
	b.waitFor(gate, 60*time.Second, func(tk store.Task) bool { return tk.Status == store.StatusRunning })
	// Queued while the only slot is busy: they run by priority, then age.
	p0, p2, p1, p2b := 0, 2, 1, 2
	ids := b.queue(wire.NewTask{CodeName: "order", Priority: &p0}, wire.NewTask{CodeName: "order", Priority: &p2},
		wire.NewTask{CodeName: "order", Priority: &p1}, wire.NewTask{CodeName: "order", Priority: &p2b})
	var starts []float64
	for _, id := range []string{ids[1], ids[3], ids[2], ids[0]} {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
			t.Fatalf("task %s: %s", id, tk.Status)
		}
		s, err := strconv.ParseFloat(strings.TrimSpace(b.log(id)), 64)
		if err != nil {
			t.Fatalf("log of %s: %q", id, b.log(id))
		}
		starts = append(starts, s)
	}
	for i := 1; i < len(starts); i++ {
		if starts[i] < starts[i-1] {
			t.Fatalf("ran out of priority order (uptimes in expected order: %v)", starts)
		}
	}
	three := 3
	delayed := b.queue(wire.NewTask{CodeName: "order", Delay: &three})[0]
	tk := b.waitEnd(delayed)
	if tk.Status != store.StatusComplete || tk.StartTime == nil || tk.StartTime.Before(tk.CreatedAt.Add(3*time.Second)) {
		t.Fatalf("delayed task: %s started %v, created %v", tk.Status, tk.StartTime, tk.CreatedAt)
	}
}
