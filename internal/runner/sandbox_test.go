package runner_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestTaskSandbox is a task that tries to fill the disk: its root file
// system refuses every write, and its task directory, which holds its code
// and takes its writes, is full at the runner's cap.
func TestTaskSandbox(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("filler", wire.CodeUpload{Command: `cat code.txt; echo
echo more >>code.txt && echo "code writable: $(cat code.txt | tr '\n' ' ')"
for d in / /etc /mnt/code; do touch "$d/x" 2>/dev/null && echo "$d writable" || echo "$d read-only"; done
for d in /mnt/task /tmp; do
  dd if=/dev/zero of="$d/fill" bs=1M count=1024 2>&1 | grep -o "No space left on device" | head -1
  echo "$d: $(( $(stat -c %s "$d/fill") >> 20 )) MiB"
  rm "$d/fill"
done
echo "nofile: $(ulimit -n)"`}, map[string]string{"code.txt": "from the package"})
	id := b.queue(wire.NewTask{CodeName: "filler"})[0]
	tk := b.waitEnd(id)
	log := b.log(id)
	if tk.Status != store.StatusComplete {
		t.Fatalf("status %s msg %q; log:\n%s", tk.Status, tk.Msg, log)
	}
	for _, want := range []string{
		"from the package\n",
		"code writable: from the packagemore \n",
		"/ read-only\n/etc read-only\n/mnt/code read-only\n",
		"No space left on device\n/mnt/task: ",
		"No space left on device\n/tmp: ",
		"nofile: 1024\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Full at the cap, give or take the code and a block.
	for dir, limit := range map[string]int{"/mnt/task": testTaskDirBytes >> 20, "/tmp": testTmpBytes >> 20} {
		_, rest, _ := strings.Cut(log, "\n"+dir+": ")
		n, err := strconv.Atoi(strings.TrimSuffix(strings.SplitN(rest, "\n", 2)[0], " MiB"))
		if err != nil || n < limit-2 || n > limit {
			t.Errorf("%s took %d MiB of a GiB (%v), want about its cap of %d MiB", dir, n, err, limit)
		}
	}
}

// TestImageCodeWithPackage: an image code that runs its own command finds
// its package in the task directory, writable, as a stack code does.
func TestImageCodeWithPackage(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	ref := buildImage(t, b.stackImage("busybox"),
		`CMD ["sh", "-c", "echo \"$(cat data.txt) in $(pwd)\"; echo more >>data.txt && cat data.txt"]`+"\n")
	up := wire.CodeUpload{Name: "own-with-zip", Image: ref}
	if _, err := b.svc.UploadCode(context.Background(), b.project, up, bytes.NewReader(makeZip(t, map[string]string{"data.txt": "packaged\n"}))); err != nil {
		t.Fatal(err)
	}
	id := b.queue(wire.NewTask{CodeName: "own-with-zip"})[0]
	tk := b.waitEnd(id)
	if log, want := b.log(id), "packaged in /mnt/task\npackaged\nmore\n"; tk.Status != store.StatusComplete || log != want {
		t.Fatalf("status %s msg %q log %q, want %q", tk.Status, tk.Msg, log, want)
	}
}

// TestCodeTooLargeForTaskDir: a package that does not fit in the task
// directory fails the task with a message that says so.
func TestCodeTooLargeForTaskDir(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("big", wire.CodeUpload{Command: `echo ran`}, map[string]string{"big.bin": strings.Repeat("x", testTaskDirBytes+1<<20)})
	id := b.queue(wire.NewTask{CodeName: "big"})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusError || !strings.Contains(tk.Msg, "could not copy the code package into /mnt/task") {
		t.Fatalf("status %s msg %q; log:\n%s", tk.Status, tk.Msg, b.log(id))
	}
}

// TestOutOfMemoryKilled: a task past its memory limit ends killed, and its
// msg says why and at what limit.
func TestOutOfMemoryKilled(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("hog", wire.CodeUpload{Command: `awk 'BEGIN { s = "x"; while (1) s = s s }'; echo "awk ended $?"`}, map[string]string{"x": ""})
	id := b.queue(wire.NewTask{CodeName: "hog"})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusKilled || !strings.Contains(tk.Msg, "Out of memory") || !strings.Contains(tk.Msg, "64 MiB") {
		t.Fatalf("status %s msg %q, want killed, out of memory at 64 MiB; log:\n%s", tk.Status, tk.Msg, b.log(id))
	}
}

// privateImage tags the busybox stack as an image the operator never
// allowed, with a secret in it, as another tenant's image would be.
func privateImage(t *testing.T, base string) string {
	t.Helper()
	ref := "mayfly-private/secret:" + id.New()
	cmd := exec.Command("docker", "build", "-q", "-t", ref, "-")
	cmd.Env = append(cmd.Environ(), "DOCKER_BUILDKIT=0")
	cmd.Stdin = strings.NewReader("FROM " + base + "\nRUN echo top-secret >/secret.txt\nCMD [\"cat\", \"/secret.txt\"]\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref).Run() })
	return ref
}

// TestImageNotAllowed is the attack: an image code naming another image
// on the engine host to print its files. The upload is refused; and a
// runner refuses it by its own list even when a server let it through.
func TestImageNotAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	secret := privateImage(t, b.stackImage("busybox"))
	ctx := context.Background()
	for _, image := range []string{secret, "mayfly/code:0123456789abcdef01234567"} {
		_, err := b.svc.UploadCode(ctx, b.project, wire.CodeUpload{Name: "peek", Image: image}, nil)
		if !errors.Is(err, service.ErrForbidden) || !strings.Contains(err.Error(), "--allow-image") {
			t.Errorf("upload of image code %s: err %v, want forbidden naming --allow-image", image, err)
		}
	}

	// A server that allows it, and a runner that does not.
	lax := setup(t, service.Config{AllowImages: []string{"mayfly-private/*"}}, 1)
	if _, err := lax.svc.UploadCode(ctx, lax.project, wire.CodeUpload{Name: "peek", Image: secret}, nil); err != nil {
		t.Fatalf("upload with the image allowed: %v", err)
	}
	id := lax.queue(wire.NewTask{CodeName: "peek"})[0]
	tk := lax.waitEnd(id)
	if tk.Status != store.StatusError || !strings.Contains(tk.Msg, "Refused by runner") || !strings.Contains(tk.Msg, "--allow-image") {
		t.Fatalf("status %s msg %q, want error refused by the runner", tk.Status, tk.Msg)
	}
	if log, _ := lax.svc.TaskLog(ctx, lax.project, id); strings.Contains(string(log), "top-secret") {
		t.Fatalf("the secret leaked: %q", log)
	}
}
