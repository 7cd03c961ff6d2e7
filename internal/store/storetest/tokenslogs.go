package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mayfly-run/mayfly/internal/store"
)

// tokenLogTests cover digest upgrades, the replaced bootstrap token and
// streamed log reads.
var tokenLogTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"UpdateTokenHash", testUpdateTokenHash},
	{"ReplaceNamedToken", testReplaceNamedToken},
	{"ReadLog", testReadLog},
}

func testUpdateTokenHash(t *testing.T, b *bundle) {
	tok := store.Token{ID: NewID(), Hash: "old-" + NewID(), Kind: store.TokenProject, ProjectID: b.project.ID, Name: "ci", CreatedAt: b.now}
	other := store.Token{ID: NewID(), Hash: "other-" + NewID(), Kind: store.TokenRunner, Name: "r", CreatedAt: b.now}
	for _, x := range []store.Token{tok, other} {
		if err := b.s.CreateToken(b.ctx, x); err != nil {
			t.Fatalf("create token: %v", err)
		}
	}
	newHash := "new-" + NewID()
	if err := b.s.UpdateTokenHash(b.ctx, tok.ID, tok.Hash, newHash); err != nil {
		t.Fatalf("update token hash: %v", err)
	}
	got, err := b.s.GetTokenByHash(b.ctx, newHash)
	if err != nil {
		t.Fatalf("get token by its new hash: %v", err)
	}
	if got.ID != tok.ID || got.Hash != newHash || got.Kind != tok.Kind || got.ProjectID != tok.ProjectID {
		t.Fatalf("token after update: %+v", got)
	}
	_, err = b.s.GetTokenByHash(b.ctx, tok.Hash)
	wantErr(t, err, store.ErrNotFound, "get token by its old hash after the update")
	// A second, concurrent upgrade finds the old hash gone.
	wantErr(t, b.s.UpdateTokenHash(b.ctx, tok.ID, tok.Hash, newHash), store.ErrNotFound, "update from a hash the token no longer has")
	wantErr(t, b.s.UpdateTokenHash(b.ctx, NewID(), "x", "y"), store.ErrNotFound, "update a missing token")
	wantErr(t, b.s.UpdateTokenHash(b.ctx, tok.ID, newHash, other.Hash), store.ErrConflict, "update to another token's hash")
}

func testReplaceNamedToken(t *testing.T, b *bundle) {
	first := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenAdmin, Name: "bootstrap", CreatedAt: b.now}
	keep := []store.Token{
		{ID: NewID(), Hash: NewID(), Kind: store.TokenAdmin, Name: "ops", CreatedAt: b.now},
		{ID: NewID(), Hash: NewID(), Kind: store.TokenProject, ProjectID: b.project.ID, Name: "bootstrap", CreatedAt: b.now},
	}
	n, err := b.s.ReplaceNamedToken(b.ctx, first)
	if err != nil || n != 0 {
		t.Fatalf("first replace: removed %d, %v; want 0, nil", n, err)
	}
	for _, k := range keep {
		if err := b.s.CreateToken(b.ctx, k); err != nil {
			t.Fatalf("create token: %v", err)
		}
	}
	second := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenAdmin, Name: "bootstrap", CreatedAt: b.now}
	n, err = b.s.ReplaceNamedToken(b.ctx, second)
	if err != nil || n != 1 {
		t.Fatalf("second replace: removed %d, %v; want 1, nil", n, err)
	}
	_, err = b.s.GetTokenByHash(b.ctx, first.Hash)
	wantErr(t, err, store.ErrNotFound, "get the replaced token")
	if got, err := b.s.GetTokenByHash(b.ctx, second.Hash); err != nil || got.ID != second.ID {
		t.Fatalf("get the new token: %+v, %v", got, err)
	}
	for _, k := range keep {
		if _, err := b.s.GetTokenByHash(b.ctx, k.Hash); err != nil {
			t.Fatalf("token %q of kind %s was removed too: %v", k.Name, k.Kind, err)
		}
	}
	// Two servers starting with the same new secret: the second replace
	// removes the first's row and stores its own, no conflict.
	again := second
	again.ID = NewID()
	if n, err := b.s.ReplaceNamedToken(b.ctx, again); err != nil || n != 1 {
		t.Fatalf("replace with the same hash: removed %d, %v; want 1, nil", n, err)
	}
	// A hash held by a token of another name is a conflict, and the
	// transaction leaves the token it would have replaced in place.
	clash := store.Token{ID: NewID(), Hash: keep[0].Hash, Kind: store.TokenAdmin, Name: "bootstrap", CreatedAt: b.now}
	_, err = b.s.ReplaceNamedToken(b.ctx, clash)
	wantErr(t, err, store.ErrConflict, "replace with a hash another token holds")
	if _, err := b.s.GetTokenByHash(b.ctx, again.Hash); err != nil {
		t.Fatalf("a failed replace removed the current token: %v", err)
	}
}

func testReadLog(t *testing.T, b *bundle) {
	code := b.putCode(t, "readlog")
	tk, quiet := b.task(code, func(tk *store.Task) { tk.Priority = 2 }), b.task(code)
	b.insert(t, tk, quiet)
	b.leaseOnly(t, tk)

	_, err := b.s.ReadLog(b.ctx, quiet.ID, 0, func([]byte) error { t.Fatal("fn called for a task without log"); return nil })
	wantErr(t, err, store.ErrNotFound, "read the log of a task that wrote none")
	_, err = b.s.ReadLog(b.ctx, NewID(), 0, func([]byte) error { return nil })
	wantErr(t, err, store.ErrNotFound, "read the log of a missing task")

	// Chunks of every size, some bigger than any sensible read batch.
	var want []byte
	var sizes []int
	for i := range 200 {
		size := 1 + (i*7919)%4096
		if i%50 == 3 {
			size = 700 << 10
		}
		chunk := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		chunk = append(chunk, []byte(fmt.Sprintf(" #%d\n", i))...)
		if err := b.logTo(tk.ID, chunk); err != nil {
			t.Fatalf("append chunk %d: %v", i, err)
		}
		want = append(want, chunk...)
		sizes = append(sizes, len(chunk))
	}
	var got []byte
	calls := 0
	last, err := b.s.ReadLog(b.ctx, tk.ID, 0, func(c []byte) error {
		if len(c) != sizes[calls] {
			t.Fatalf("chunk %d is %d bytes, want %d: chunks must be passed as written", calls, len(c), sizes[calls])
		}
		calls++
		got = append(got, c...)
		return nil
	})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("log read differs from what was written (%d bytes, want %d)", len(got), len(want))
	}
	whole, err := b.s.GetLog(b.ctx, tk.ID)
	if err != nil || !bytes.Equal(whole, want) {
		t.Fatalf("GetLog and ReadLog disagree (%d vs %d bytes, %v)", len(whole), len(want), err)
	}

	// Following: nothing new, then only what came after.
	n, err := b.s.ReadLog(b.ctx, tk.ID, last, func([]byte) error { t.Fatal("fn called with nothing new"); return nil })
	if err != nil || n != last {
		t.Fatalf("read past the end: %d, %v; want %d, nil", n, err, last)
	}
	if err := b.logTo(tk.ID, []byte("more\n")); err != nil {
		t.Fatal(err)
	}
	var tail []byte
	n, err = b.s.ReadLog(b.ctx, tk.ID, last, func(c []byte) error { tail = append(tail, c...); return nil })
	if err != nil || n <= last || string(tail) != "more\n" {
		t.Fatalf("follow read: seq %d (was %d), %q, %v", n, last, tail, err)
	}

	// An error from fn stops the read at once.
	stop := errors.New("client went away")
	calls = 0
	_, err = b.s.ReadLog(b.ctx, tk.ID, 0, func([]byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn error: read went on for %d calls, err %v", calls, err)
	}

	// fn may take its time and use the store: the read holds nothing.
	_, err = b.s.ReadLog(b.ctx, tk.ID, 0, func([]byte) error {
		_, err := b.s.GetTask(b.ctx, b.project.ID, tk.ID)
		return err
	})
	if err != nil {
		t.Fatalf("store call from inside fn: %v", err)
	}
}
