package sqlite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func insertProject(ctx context.Context, tx *querier, id string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO projects (id, name, created_at) VALUES (?, ?, 0)`, id, "p")
	return err
}

func countProjects(t *testing.T, s *Store, ids ...string) (n int) {
	t.Helper()
	for _, id := range ids {
		var c int
		if err := s.read().QueryRowContext(t.Context(), `SELECT count(*) FROM projects WHERE id = ?`, id).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// Writers that wait together share one commit, and each gets its own
// answer: a write that fails (here a duplicate key, as a lost lease or a
// conflict would) is rolled back alone and the others in its group are
// applied; a writer that gave up before its turn is not applied at all.
func TestGroupCommitKeepsWritersApart(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	ctx := context.Background()
	if err := s.withTx(ctx, func(tx *querier) error { return insertProject(ctx, tx, "dup") }); err != nil {
		t.Fatal(err)
	}
	// Hold the writer in a first transaction so the rest pile up into one
	// group behind it.
	release := make(chan struct{})
	held := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s.withTx(ctx, func(tx *querier) error { close(held); <-release; return insertProject(ctx, tx, "first") })
	})
	<-held
	const n = 40
	errs := make([]error, n)
	gone, cancel := context.WithCancel(ctx)
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		c := ctx
		switch i {
		case 7:
			id = "dup" // fails: the key exists
		case 13:
			c = gone // its caller gives up while it waits
		}
		wg.Go(func() {
			errs[i] = s.withTx(c, func(tx *querier) error {
				if err := insertProject(ctx, tx, id+"-a"); err != nil {
					return err
				}
				// A second statement, so a failed writer's first one
				// must be rolled back too.
				return insertProject(ctx, tx, id)
			})
		})
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		waiting := s.g.q.Waiting()
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writers waiting", waiting, n)
		}
	}
	cancel()
	close(release)
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		switch i {
		case 7:
			if errs[i] == nil {
				t.Errorf("the duplicate insert succeeded")
			}
			if got := countProjects(t, s, "dup-a"); got != 0 {
				t.Errorf("the failed writer's first statement was kept")
			}
		case 13:
			if !errors.Is(errs[i], context.Canceled) {
				t.Errorf("the cancelled writer got %v", errs[i])
			}
			if got := countProjects(t, s, id, id+"-a"); got != 0 {
				t.Errorf("the cancelled writer's rows were written")
			}
		default:
			if errs[i] != nil {
				t.Errorf("writer %d: %v", i, errs[i])
			} else if got := countProjects(t, s, id, id+"-a"); got != 2 {
				t.Errorf("writer %d answered nil but %d of its 2 rows are there", i, got)
			}
		}
	}
}

// The durability promise under group commit, shown by the fault that
// would break it: a process writing from many goroutines is killed with
// SIGKILL at a random moment; every write it had been answered nil for is
// in the file when it is opened again.
func TestGroupCommitAcknowledgedSurviveKill(t *testing.T) {
	if os.Getenv("MAYFLY_GROUP_WRITER_CHILD") != "" {
		groupWriterChild()
		return
	}
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "kill.db")
		openTest(t, path).Close() // migrated before the child starts
		cmd := exec.Command(os.Args[0], "-test.run=^TestGroupCommitAcknowledgedSurviveKill$")
		cmd.Env = append(os.Environ(), "MAYFLY_GROUP_WRITER_CHILD="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		killAt := 300 + 400*round
		for sc.Scan() {
			acked = append(acked, sc.Text())
			if len(acked) == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if len(acked) < killAt {
			t.Fatalf("the writer stopped after %d writes, before the kill", len(acked))
		}
		s := openTest(t, path)
		missing := 0
		for _, id := range acked {
			if countProjects(t, s, id) != 1 {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes lost after SIGKILL", round, missing, len(acked))
		}
		t.Logf("round %d: all %d acknowledged writes there after SIGKILL", round, len(acked))
	}
}

// groupWriterChild writes projects from 16 goroutines until killed and
// prints each id once its write returned nil.
func groupWriterChild() {
	s, err := Open(context.Background(), os.Getenv("MAYFLY_GROUP_WRITER_CHILD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				ctx := context.Background()
				if err := s.withTx(ctx, func(tx *querier) error { return insertProject(ctx, tx, id) }); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				w.WriteString(id + "\n")
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
