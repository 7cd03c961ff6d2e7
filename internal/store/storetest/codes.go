package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func testProjects(t *testing.T, b *bundle) {
	got, err := b.s.GetProject(b.ctx, b.project.ID)
	if err != nil {
		t.Fatalf("get project: %v", err)
	}
	if got.ID != b.project.ID || got.Name != b.project.Name || !got.CreatedAt.Equal(b.project.CreatedAt) {
		t.Fatalf("get project: got %+v, want %+v", got, b.project)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Fatalf("project created_at in %v, want UTC", got.CreatedAt.Location())
	}
	b.newProject(t, "second")
	n, err := b.s.CountProjects(b.ctx)
	if err != nil || n != 2 {
		t.Fatalf("count projects: got %d, %v; want 2", n, err)
	}
	wantErr(t, b.s.CreateProject(b.ctx, b.project), store.ErrConflict, "create project with a used id")
	_, err = b.s.GetProject(b.ctx, NewID())
	wantErr(t, err, store.ErrNotFound, "get missing project")
}

func testTokens(t *testing.T, b *bundle) {
	admin := store.Token{ID: NewID(), Hash: NewID() + NewID(), Kind: store.TokenAdmin, Name: "boot", CreatedAt: b.now}
	proj := store.Token{ID: NewID(), Hash: NewID() + NewID(), Kind: store.TokenProject, ProjectID: b.project.ID, Name: "ci", CreatedAt: b.now}
	for _, tok := range []store.Token{admin, proj} {
		if err := b.s.CreateToken(b.ctx, tok); err != nil {
			t.Fatalf("create %s token: %v", tok.Kind, err)
		}
		got, err := b.s.GetTokenByHash(b.ctx, tok.Hash)
		if err != nil {
			t.Fatalf("get %s token by hash: %v", tok.Kind, err)
		}
		got.CreatedAt = got.CreatedAt.UTC()
		if !reflect.DeepEqual(got, tok) {
			t.Fatalf("get %s token: got %+v, want %+v", tok.Kind, got, tok)
		}
	}
	dup := proj
	dup.ID = NewID()
	wantErr(t, b.s.CreateToken(b.ctx, dup), store.ErrConflict, "create token with a used hash")
	_, err := b.s.GetTokenByHash(b.ctx, "nope")
	wantErr(t, err, store.ErrNotFound, "get token by unknown hash")
}

func testCodeRevisionNumbering(t *testing.T, b *bundle) {
	first := b.putCode(t, "hello", func(r *store.CodeRevision) {
		r.Runtime = "python"
		r.FileName = "hello.py"
		r.Image = "python:3"
		r.Command = "python3 hello.py"
		r.Config = `{"a":1}`
		r.EnvVars = map[string]string{"A": "1", "B": "two"}
		r.MaxConcurrency = 3
		r.Retries = 2
		r.RetriesDelay = 60
		r.DefaultPriority = 1
		r.PackageKey = "pkg/1"
		r.PackageSHA256 = "abc"
		r.PackageSize = 1234
	})
	if first.Rev != 1 {
		t.Fatalf("first revision: Rev = %d, want 1", first.Rev)
	}
	if !first.CreatedAt.Equal(b.now) || !first.UpdatedAt.Equal(b.now) || first.Paused {
		t.Fatalf("first revision: code times/paused %v %v %v", first.CreatedAt, first.UpdatedAt, first.Paused)
	}

	var revs []store.Code
	revs = append(revs, first)
	for i := 2; i <= 3; i++ {
		at := b.now.Add(time.Duration(i) * time.Minute)
		c := b.putCode(t, "hello", func(r *store.CodeRevision) {
			r.CreatedAt = at
			r.Command = fmt.Sprintf("v%d", i)
			r.Rev = 99 // ignored: the store numbers revisions
		})
		if c.CodeID != first.CodeID {
			t.Fatalf("revision %d: code id %s, want the code's real id %s", i, c.CodeID, first.CodeID)
		}
		if c.Rev != i || c.Command != fmt.Sprintf("v%d", i) {
			t.Fatalf("revision %d: got Rev %d command %q", i, c.Rev, c.Command)
		}
		if !c.CreatedAt.Equal(b.now) || !c.UpdatedAt.Equal(at) || !c.CodeRevision.CreatedAt.Equal(at) {
			t.Fatalf("revision %d: created %v updated %v rev created %v", i, c.CreatedAt, c.UpdatedAt, c.CodeRevision.CreatedAt)
		}
		revs = append(revs, c)
	}
	latest := revs[2]

	got, err := b.s.GetCode(b.ctx, b.project.ID, first.CodeID)
	if err != nil {
		t.Fatalf("get code: %v", err)
	}
	sameCode(t, got, latest)
	got, err = b.s.GetCodeByName(b.ctx, b.project.ID, "hello")
	if err != nil {
		t.Fatalf("get code by name: %v", err)
	}
	sameCode(t, got, latest)

	old, err := b.s.GetCodeRevision(b.ctx, first.CodeRevision.ID)
	if err != nil {
		t.Fatalf("get first revision: %v", err)
	}
	sameRev(t, old, first.CodeRevision)

	list, err := b.s.ListCodeRevisions(b.ctx, b.project.ID, first.CodeID, store.Page{PerPage: 2})
	if err != nil || len(list) != 2 || list[0].Rev != 3 || list[1].Rev != 2 {
		t.Fatalf("list revisions page 0: %+v, %v", list, err)
	}
	sameRev(t, list[0], latest.CodeRevision)
	list, err = b.s.ListCodeRevisions(b.ctx, b.project.ID, first.CodeID, store.Page{Page: 1, PerPage: 2})
	if err != nil || len(list) != 1 || list[0].Rev != 1 {
		t.Fatalf("list revisions page 1: %+v, %v", list, err)
	}
	sameRev(t, list[0], first.CodeRevision)
	list, err = b.s.ListCodeRevisions(b.ctx, b.project.ID, first.CodeID, store.Page{})
	if err != nil || len(list) != 3 {
		t.Fatalf("list revisions, default page: %d, %v", len(list), err)
	}
	_, err = b.s.ListCodeRevisions(b.ctx, b.project.ID, NewID(), store.Page{})
	wantErr(t, err, store.ErrNotFound, "list revisions of a missing code")
	_, err = b.s.GetCodeRevision(b.ctx, NewID())
	wantErr(t, err, store.ErrNotFound, "get missing revision")

	// Another name is another code, numbered from 1.
	other := b.putCode(t, "other")
	if other.Rev != 1 || other.CodeID == first.CodeID {
		t.Fatalf("other code: id %s rev %d", other.CodeID, other.Rev)
	}
	// nil and empty EnvVars both read back without error.
	empty := b.putCode(t, "empty-env", func(r *store.CodeRevision) { r.EnvVars = map[string]string{} })
	if len(empty.EnvVars) != 0 {
		t.Fatalf("empty env: %v", empty.EnvVars)
	}
}

func testListCodes(t *testing.T, b *bundle) {
	// 32 codes, updated one minute apart: c00 oldest.
	var codes []store.Code
	for i := range 32 {
		at := b.now.Add(time.Duration(i) * time.Minute)
		codes = append(codes, b.putCode(t, fmt.Sprintf("c%02d", i), func(r *store.CodeRevision) { r.CreatedAt = at }))
	}
	list, err := b.s.ListCodes(b.ctx, b.project.ID, store.Page{})
	if err != nil {
		t.Fatalf("list codes: %v", err)
	}
	if len(list) != 30 {
		t.Fatalf("list codes with PerPage 0: %d codes, want 30", len(list))
	}
	if list[0].Name != "c31" || list[29].Name != "c02" {
		t.Fatalf("list codes order: first %s last %s", list[0].Name, list[29].Name)
	}
	sameCode(t, list[0], codes[31])

	// A new revision of the oldest code moves it to the front.
	bumped := b.putCode(t, "c00", func(r *store.CodeRevision) { r.CreatedAt = b.now.Add(time.Hour) })
	list, err = b.s.ListCodes(b.ctx, b.project.ID, store.Page{Page: 0, PerPage: 3})
	if err != nil || len(list) != 3 {
		t.Fatalf("list codes page 0: %d, %v", len(list), err)
	}
	if list[0].Name != "c00" || list[0].Rev != 2 || list[1].Name != "c31" || list[2].Name != "c30" {
		t.Fatalf("list codes after bump: %s %s %s", list[0].Name, list[1].Name, list[2].Name)
	}
	sameCode(t, list[0], bumped)
	list, err = b.s.ListCodes(b.ctx, b.project.ID, store.Page{Page: 10, PerPage: 3})
	if err != nil || len(list) != 2 || list[0].Name != "c02" || list[1].Name != "c01" {
		t.Fatalf("list codes last page: %+v, %v", list, err)
	}
	list, err = b.s.ListCodes(b.ctx, b.project.ID, store.Page{Page: 11, PerPage: 3})
	if err != nil || len(list) != 0 {
		t.Fatalf("list codes past the end: %d, %v", len(list), err)
	}
}

func testDeleteCode(t *testing.T, b *bundle) {
	c1 := b.putCode(t, "doomed", func(r *store.CodeRevision) { r.PackageKey = "k1" })
	c2 := b.putCode(t, "doomed", func(r *store.CodeRevision) { r.PackageKey = "k2" })
	keep := b.putCode(t, "keep")
	tk := b.task(c2)
	b.insert(t, tk)

	_, err := b.s.DeleteCode(b.ctx, NewID(), c1.CodeID)
	wantErr(t, err, store.ErrNotFound, "delete code in another project")

	revs, err := b.s.DeleteCode(b.ctx, b.project.ID, c1.CodeID)
	if err != nil {
		t.Fatalf("delete code: %v", err)
	}
	var keys []string
	for _, r := range revs {
		keys = append(keys, r.PackageKey)
	}
	if len(revs) != 2 || !(keys[0] == "k1" && keys[1] == "k2" || keys[0] == "k2" && keys[1] == "k1") {
		t.Fatalf("delete code returned revisions with keys %v, want k1 and k2", keys)
	}
	_, err = b.s.GetCode(b.ctx, b.project.ID, c1.CodeID)
	wantErr(t, err, store.ErrNotFound, "get deleted code")
	_, err = b.s.GetCodeByName(b.ctx, b.project.ID, "doomed")
	wantErr(t, err, store.ErrNotFound, "get deleted code by name")
	_, err = b.s.GetCodeRevision(b.ctx, c1.CodeRevision.ID)
	wantErr(t, err, store.ErrNotFound, "get revision of deleted code")
	_, err = b.s.DeleteCode(b.ctx, b.project.ID, c1.CodeID)
	wantErr(t, err, store.ErrNotFound, "delete code twice")

	// Tasks keep their rows; other codes stay.
	sameTask(t, b.getTask(t, tk.ID), tk)
	if _, err := b.s.GetCode(b.ctx, b.project.ID, keep.CodeID); err != nil {
		t.Fatalf("get kept code: %v", err)
	}
	// The name is free again: a new code, numbered from 1.
	again := b.putCode(t, "doomed")
	if again.CodeID == c1.CodeID || again.Rev != 1 {
		t.Fatalf("re-created code: id %s rev %d", again.CodeID, again.Rev)
	}
}

func testProjectIsolation(t *testing.T, b *bundle) {
	other := b.newProject(t, "other")
	mine := b.putCode(t, "shared-name")
	theirs := b.putCodeIn(t, other.ID, "shared-name")
	if theirs.CodeID == mine.CodeID || theirs.Rev != 1 {
		t.Fatalf("same name in two projects: ids %s %s rev %d", mine.CodeID, theirs.CodeID, theirs.Rev)
	}
	tk := b.task(mine)
	b.insert(t, tk)

	_, err := b.s.GetCode(b.ctx, other.ID, mine.CodeID)
	wantErr(t, err, store.ErrNotFound, "get code with another project's id")
	got, err := b.s.GetCodeByName(b.ctx, other.ID, "shared-name")
	if err != nil || got.CodeID != theirs.CodeID {
		t.Fatalf("get code by name in other project: %s, %v", got.CodeID, err)
	}
	_, err = b.s.ListCodeRevisions(b.ctx, other.ID, mine.CodeID, store.Page{})
	wantErr(t, err, store.ErrNotFound, "list revisions with another project's id")
	_, err = b.s.DeleteCode(b.ctx, other.ID, mine.CodeID)
	wantErr(t, err, store.ErrNotFound, "delete code with another project's id")
	_, err = b.s.GetTask(b.ctx, other.ID, tk.ID)
	wantErr(t, err, store.ErrNotFound, "get task with another project's id")
	_, err = b.s.CancelTask(b.ctx, other.ID, tk.ID, b.now)
	wantErr(t, err, store.ErrNotFound, "cancel task with another project's id")

	codes, err := b.s.ListCodes(b.ctx, other.ID, store.Page{})
	if err != nil || len(codes) != 1 || codes[0].CodeID != theirs.CodeID {
		t.Fatalf("list codes of other project: %+v, %v", codes, err)
	}
	tasks, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: other.ID})
	if err != nil || len(tasks) != 0 {
		t.Fatalf("list tasks of other project: %d, %v", len(tasks), err)
	}
	// Nothing above changed the task.
	sameTask(t, b.getTask(t, tk.ID), tk)
}
