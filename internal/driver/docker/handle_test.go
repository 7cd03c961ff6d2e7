package docker

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// TestBrokenWaitIsNoExit is the engine crash TestEngineRestart makes,
// with its timing pinned: the wait for a running task's container breaks
// (the engine died), and by the inspect after, an engine started again
// answers that the container exited 0, which is only how it restored a
// container its crash took down. The task must not end complete: its end
// is unknown, and it runs again.
func TestBrokenWaitIsNoExit(t *testing.T) {
	inspected := false
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inspected = true
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Id":"c0ffee","State":{"Status":"exited","Running":false,"ExitCode":0}}`)
	}))
	defer engine.Close()
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+engine.Listener.Addr().String()), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	h := newHandle(&Driver{cli: cli}, "c0ffee")
	waitE := make(chan error, 1)
	waitE <- errors.New("unexpected EOF")
	h.waitC, h.waitE = make(chan container.WaitResponse), waitE
	close(h.copied)
	h.collect()
	res, err := h.Wait(t.Context())
	if err == nil {
		t.Fatalf("a broken wait ended the task with %+v (the restarted engine inspected: %v)", res, inspected)
	}
}
