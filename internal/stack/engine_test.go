package stack

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/client"
)

// fakeBuilds is an engine whose builds answer with the streams of
// answers, one per build, the last one again once they run out.
func fakeBuilds(t *testing.T, answers ...string) (engine, *atomic.Int32) {
	t.Helper()
	var builds atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/build") {
			http.NotFound(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		n := int(builds.Add(1))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answers[min(n, len(answers))-1])
	}))
	t.Cleanup(srv.Close)
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return engine{cli: cli}, &builds
}

const (
	removedUnderBuild = `{"stream":"Step 2/4 : RUN echo v2\n"}` + "\n" +
		`{"errorDetail":{"message":"unable to find image \"sha256:ff90307be87edbbbd67149fe00e62a7aec627440a6e59fd799004de9fa01fba4\""},"error":"unable to find image \"sha256:ff90307be87edbbbd67149fe00e62a7aec627440a6e59fd799004de9fa01fba4\""}` + "\n"
	built = `{"stream":"Successfully built 0123456789ab\n"}` + "\n"
)

// A build that meets an image removed under it (here the engine's answer
// when a parallel build's cleanup removed a child of the same base while
// the classic builder probed its cache: `make test` met it) is built
// again; it was no fault of the recipe.
func TestBuildAgainWhenAnImageIsRemovedUnderIt(t *testing.T) {
	e, builds := fakeBuilds(t, removedUnderBuild, built)
	var out bytes.Buffer
	if err := e.build(context.Background(), []byte("tar"), "mayfly/stack:x", nil, nil, false, &out); err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if n := builds.Load(); n != 2 {
		t.Fatalf("%d builds, want 2", n)
	}
	if !strings.Contains(out.String(), "Successfully built") {
		t.Fatalf("output %q", out.String())
	}
}

// The retries are bounded, and a recipe that fails by itself (an image it
// names that is not there) is not tried again.
func TestBuildFailuresNotRetriedForEver(t *testing.T) {
	e, builds := fakeBuilds(t, removedUnderBuild)
	if err := e.build(context.Background(), []byte("tar"), "mayfly/stack:x", nil, nil, false, io.Discard); err == nil || builds.Load() != buildTries {
		t.Fatalf("build: %v after %d builds, want an error after %d", err, builds.Load(), buildTries)
	}
	e, builds = fakeBuilds(t, `{"errorDetail":{"message":"unable to find image \"nosuch:latest\""}}`+"\n")
	if err := e.build(context.Background(), []byte("tar"), "mayfly/stack:x", nil, nil, false, io.Discard); err == nil || builds.Load() != 1 {
		t.Fatalf("build of a recipe naming a missing image: %v after %d builds, want an error after 1", err, builds.Load())
	}
}
