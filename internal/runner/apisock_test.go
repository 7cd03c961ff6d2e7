package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// progressCounter is a Queue that counts the progress writes that reach
// it, as the store's synced writes would be counted, and keeps the last.
type progressCounter struct {
	Queue  // nil: the socket uses nothing else
	mu     sync.Mutex
	writes int
	last   wire.Progress
}

func (q *progressCounter) ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error {
	// A synced write takes a moment; without one, writes that should not
	// overlap would rarely get the chance to.
	time.Sleep(time.Millisecond)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.writes++
	q.last = p
	return nil
}

func (q *progressCounter) get() (int, wire.Progress) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.writes, q.last
}

// testSocket is a task's home serving one task.
type testSocket struct {
	*taskHome
	task *sockTask
}

// Close ends the task, as its container's end does, and closes the home.
func (a testSocket) Close() {
	a.end(a.task)
	a.close()
}

// shortTempDir is a directory for unix sockets, whose paths are short;
// t.TempDir's can be too long.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func testJob(n int) wire.Job {
	return wire.Job{TaskID: fmt.Sprintf("5f00000000000000000000%02d", n), ProjectID: "5f00000000000000000000aa",
		TaskToken: fmt.Sprintf("tok%d", n), Payload: fmt.Sprintf(`{"n":%d}`, n), Code: wire.JobCode{Config: "{}"}}
}

// beginTest makes job the home's task, its progress going to q.
func beginTest(t *testing.T, h *taskHome, job wire.Job, q Queue) *sockTask {
	t.Helper()
	task, err := h.begin(job, func(ctx context.Context, p wire.Progress) error {
		return q.ReportProgress(ctx, job.TaskToken, job.TaskID, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func openTestSocket(t *testing.T, lim sockLimits) (testSocket, *progressCounter, wire.Job) {
	t.Helper()
	h, err := openHome(filepath.Join(shortTempDir(t), "t1"), lim, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	q := &progressCounter{}
	job := testJob(1)
	return testSocket{h, beginTest(t, h, job, q)}, q, job
}

func sockClient(h *taskHome) *http.Client {
	sock := filepath.Join(h.dir, "api.sock")
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func postProgress(c *http.Client, job wire.Job, percent int, msg string) (int, string, error) {
	url := fmt.Sprintf("%s/2/projects/%s/tasks/%s/progress", apiSocketURL, job.ProjectID, job.TaskID)
	resp, err := c.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"percent":%d,"msg":%q}`, percent, msg)))
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), nil
}

// The attack: a task opens thousands of connections to its socket and
// leaves them idle. Before the cap, one task held 3,000 (about 19 KB of
// server memory each). Now the socket holds its cap, closes the rest at
// once and the held ones after the timeout, and still serves the task.
func TestTaskSocketConnectionFlood(t *testing.T) {
	lim := defaultSockLimits
	lim.ReadHeaderTimeout, lim.IdleTimeout = 500*time.Millisecond, 500*time.Millisecond
	a, _, job := openTestSocket(t, lim)
	defer a.Close()
	sock := filepath.Join(a.dir, "api.sock")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3000 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if n := a.ln.Open(); n > lim.MaxConns {
			t.Fatalf("socket holds %d connections, cap %d", n, lim.MaxConns)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.ln.Refused() < 3000-int64(lim.MaxConns) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := a.ln.Refused(); got < 3000-int64(lim.MaxConns) {
		t.Fatalf("refused %d of 3000 connections over a cap of %d", got, lim.MaxConns)
	}
	if n := a.ln.Open(); n > lim.MaxConns {
		t.Fatalf("socket holds %d connections, cap %d", n, lim.MaxConns)
	}
	// The ones held, idle, go after the timeout.
	for a.ln.Open() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := a.ln.Open(); n > 0 {
		t.Fatalf("socket still holds %d idle connections after 10 s (timeout 0.5 s)", n)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if st, body, err := postProgress(sockClient(a.taskHome), job, 50, "still here"); err != nil || st != 200 {
		t.Fatalf("progress after the flood: %d %s %v", st, body, err)
	}
}

// The attack: a task posts progress in a tight loop over several
// connections. Before, every post was a synced database write, about
// 1,000 a second. Now at most one per interval reaches the queue, every
// post is still answered, and the last one the task sent is the one kept.
func TestTaskSocketProgressFlood(t *testing.T) {
	lim := defaultSockLimits
	lim.ProgressEvery = 200 * time.Millisecond
	a, q, job := openTestSocket(t, lim)
	c := sockClient(a.taskHome)

	var posted atomic.Int64
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				st, body, err := postProgress(c, job, i%100, fmt.Sprintf("w%d %d", w, i))
				if err != nil || st != 200 {
					t.Errorf("progress %d: %d %s %v", i, st, body, err)
					return
				}
				posted.Add(1)
			}
		}()
	}
	wg.Wait()
	// The task's last word, sent right after the flood, within the
	// interval: it waits its turn, and must not be lost when the task ends.
	if st, body, err := postProgress(c, job, 100, "done"); err != nil || st != 200 {
		t.Fatalf("last progress: %d %s %v", st, body, err)
	}
	a.Close()

	writes, last := q.get()
	t.Logf("%d progress posts in 2 s became %d writes", posted.Load(), writes)
	if posted.Load() < 100 {
		t.Fatalf("only %d posts; the flood did not take", posted.Load())
	}
	// 2 s at one write per 200 ms is 10, and one more for the final flush;
	// 25 leaves room for a slow machine and is far from one per post.
	if writes > 25 {
		t.Fatalf("%d posts made %d progress writes; want at most 25", posted.Load(), writes)
	}
	if last.Percent == nil || *last.Percent != 100 || last.Msg != "done" {
		t.Fatalf("last progress written %+v, want 100 \"done\"", last)
	}
}

// Bad reports are refused at once and never take the place of a good one.
func TestTaskSocketRefusesBadProgress(t *testing.T) {
	a, q, job := openTestSocket(t, defaultSockLimits)
	c := sockClient(a.taskHome)
	if st, _, err := postProgress(c, job, 10, "ok"); err != nil || st != 200 {
		t.Fatalf("first: %d %v", st, err)
	}
	if st, body, _ := postProgress(c, job, 101, "too much"); st != 400 || !strings.Contains(body, "between 0 and 100") {
		t.Fatalf("percent 101: %d %s", st, body)
	}
	url := fmt.Sprintf("%s/2/projects/%s/tasks/%s/progress", apiSocketURL, job.ProjectID, job.TaskID)
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"percent":20}`))
	req.Header.Set("Authorization", "OAuth someone-else")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("foreign token: %d", resp.StatusCode)
	}
	a.Close()
	if _, last := q.get(); last.Percent == nil || *last.Percent != 10 {
		t.Fatalf("last progress written %+v, want 10", last)
	}
}
