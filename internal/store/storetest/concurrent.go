package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// concurrencyTests hold what several writers at once must not break: log
// appends racing on one task, and leases from several stores (servers) on
// one database.
var concurrencyTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"ConcurrentLogAppends", testConcurrentLogAppends},
	{"LeaseFromTwinStores", testLeaseFromTwinStores},
	{"LogAppendsFromTwinStores", testLogAppendsFromTwinStores},
	{"ConcurrentCodeUploads", testConcurrentCodeUploads},
	{"ConcurrentReplaceNamedToken", testConcurrentReplaceNamedToken},
	{"ConcurrentLeaseWritesFenced", testConcurrentLeaseWritesFenced},
}

// testConcurrentReplaceNamedToken replaces one named token from several
// writers at once, as servers starting together each store their
// bootstrap token: one token of that name stays.
func testConcurrentReplaceNamedToken(t *testing.T, b *bundle) {
	const n = 6
	stores := []store.Store{b.s}
	if b.h.Twin != nil {
		stores = append(stores, b.h.Twin(t, b.s))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		removed int
		errs    = make(chan error, n)
	)
	for w := range n {
		s := stores[w%len(stores)]
		wg.Go(func() {
			k, err := s.ReplaceNamedToken(b.ctx, store.Token{
				ID: NewID(), Hash: NewID(), Kind: store.TokenAdmin, Name: "bootstrap", CreatedAt: b.now,
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			removed += k
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent replace: %v", err)
	}
	toks, err := b.s.ListTokens(b.ctx, "")
	if err != nil {
		t.Fatalf("list tokens: %v", err)
	}
	kept := 0
	for _, tok := range toks {
		if tok.Kind == store.TokenAdmin && tok.Name == "bootstrap" {
			kept++
		}
	}
	if kept != 1 || removed != n-1 {
		t.Fatalf("%d bootstrap tokens stay and %d were removed; want 1 and %d", kept, removed, n-1)
	}
}

// testConcurrentCodeUploads uploads one new code name from several
// writers at once: all succeed, onto one code, with revisions 1..n.
func testConcurrentCodeUploads(t *testing.T, b *bundle) {
	const n = 6
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes []store.Code
		errs  = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			c, err := b.s.PutCodeRevision(b.ctx, store.CodeRevision{
				ID: NewID(), CodeID: NewID(), ProjectID: b.project.ID, Name: "hot",
				Runtime: "sh", FileName: "run.sh", Stack: "default", CreatedAt: b.now,
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			codes = append(codes, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent upload: %v", err)
	}
	revs := map[int]bool{}
	for _, c := range codes {
		if c.CodeID != codes[0].CodeID {
			t.Fatalf("uploads made codes %s and %s of one name", codes[0].CodeID, c.CodeID)
		}
		revs[c.Rev] = true
	}
	for r := 1; r <= n; r++ {
		if !revs[r] {
			t.Fatalf("revisions %v; want 1..%d once each", revs, n)
		}
	}
	got, err := b.s.GetCodeByName(b.ctx, b.project.ID, "hot")
	if err != nil || got.Rev != n {
		t.Fatalf("code after the uploads: rev %d, %v; want rev %d", got.Rev, err, n)
	}
}

// appendAll has writers goroutines append perWriter distinct chunks each
// to tk's log through the stores given (round robin), then checks that
// every chunk is in the log exactly once, whole, and that a writer's
// chunks keep their order.
func appendAll(t *testing.T, b *bundle, stores []store.Store, tk store.Task, writers, perWriter int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range perWriter {
				chunk := fmt.Appendf(nil, "<w%02d-%03d>", w, i)
				if err := s.AppendLog(b.ctx, store.AppendLogParams{
					TaskID: tk.ID, RunnerID: tk.RunnerID, Attempt: tk.Attempt, Data: chunk,
				}); err != nil {
					errs <- fmt.Errorf("writer %d chunk %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}

	var chunks [][]byte
	last, err := b.s.ReadLog(b.ctx, tk.ID, 0, func(c []byte) error {
		chunks = append(chunks, bytes.Clone(c))
		return nil
	})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	if len(chunks) != writers*perWriter {
		t.Fatalf("log holds %d chunks, want %d", len(chunks), writers*perWriter)
	}
	// Seqs are distinct and increasing: reading on after the last one
	// finds nothing, and the chunks came back one per seq.
	if more, err := b.s.ReadLog(b.ctx, tk.ID, last, func([]byte) error {
		return fmt.Errorf("a chunk after the last seq %d", last)
	}); err != nil || more != last {
		t.Fatalf("read after the last seq %d: %d, %v", last, more, err)
	}
	seen := map[string]bool{}
	next := make([]int, writers)
	for _, c := range chunks {
		var w, i int
		if _, err := fmt.Sscanf(string(c), "<w%02d-%03d>", &w, &i); err != nil || w >= writers {
			t.Fatalf("chunk %q is not one that was written", c)
		}
		if seen[string(c)] {
			t.Fatalf("chunk %q is in the log twice", c)
		}
		seen[string(c)] = true
		if i != next[w] {
			t.Fatalf("writer %d: chunk %d came before chunk %d", w, i, next[w])
		}
		next[w]++
	}
	if got, err := b.s.GetLog(b.ctx, tk.ID); err != nil || len(got) != len(bytes.Join(chunks, nil)) {
		t.Fatalf("get log: %d bytes, %v", len(got), err)
	}
	if size := b.getTask(t, tk.ID).LogSize; size != int64(len(bytes.Join(chunks, nil))) {
		t.Fatalf("log_size %d, want %d", size, len(bytes.Join(chunks, nil)))
	}
}

func testConcurrentLogAppends(t *testing.T, b *bundle) {
	code := b.putCode(t, "chatty")
	tk := b.task(code)
	b.insert(t, tk)
	leased := b.lease(t, "r1", 1, b.now)
	if len(leased) != 1 {
		t.Fatalf("lease: %d tasks", len(leased))
	}
	appendAll(t, b, []store.Store{b.s}, leased[0], 8, 50)
}

func testLogAppendsFromTwinStores(t *testing.T, b *bundle) {
	if b.h.Twin == nil {
		t.Skip("backend has no Twin hook")
	}
	code := b.putCode(t, "chatty")
	tk := b.task(code)
	b.insert(t, tk)
	leased := b.lease(t, "r1", 1, b.now)
	if len(leased) != 1 {
		t.Fatalf("lease: %d tasks", len(leased))
	}
	appendAll(t, b, []store.Store{b.s, b.h.Twin(t, b.s)}, leased[0], 8, 25)
}

// testLeaseFromTwinStores leases from two stores on one database at once,
// as two servers would: no task goes out twice, every task goes out, and a
// code's max_concurrency holds across both.
func testLeaseFromTwinStores(t *testing.T, b *bundle) {
	if b.h.Twin == nil {
		t.Skip("backend has no Twin hook")
	}
	stores := []store.Store{b.s, b.h.Twin(t, b.s)}
	code := b.putCode(t, "race")
	limited := b.putCode(t, "race-limited", func(r *store.CodeRevision) { r.MaxConcurrency = 3 })
	const n = 200
	b.insertN(t, n, code, func(tk *store.Task) { tk.Priority = 1 })
	b.insertN(t, 20, limited, func(tk *store.Task) { tk.Priority = 1 })

	var (
		mu   sync.Mutex
		seen = map[string]string{}
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	for w := range 8 {
		s := stores[w%2]
		runner := fmt.Sprintf("r%d", w)
		wg.Go(func() {
			for {
				got, err := s.LeaseTasks(b.ctx, store.LeaseParams{
					RunnerID: runner, Max: 1 + w%3, LeaseDuration: time.Minute, Now: b.now,
				})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, tk := range got {
					if prev, dup := seen[tk.ID]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("task %s leased to %s and %s", tk.ID, prev, runner)
						return
					}
					seen[tk.ID] = runner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent lease from two stores: %v", err)
	}
	stats, err := b.s.CodeStats(b.ctx, b.project.ID, limited.CodeID)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if stats[store.StatusPreparing] != 3 {
		t.Fatalf("limited code has %d tasks preparing, want its max_concurrency 3 (stats %v)", stats[store.StatusPreparing], stats)
	}
	// A leaser may leave a limited code to another that holds it for the
	// moment; once all stop, one more lease finds the code full.
	if extra := b.lease(t, "late", 5, b.now); len(extra) != 0 {
		t.Fatalf("a late lease got %d tasks; want none (all unlimited taken, limited code full)", len(extra))
	}
	if len(seen) != n+3 {
		t.Fatalf("leased %d distinct tasks, want %d (all unlimited plus 3 limited)", len(seen), n+3)
	}
}
