package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// The task's API socket: a unix socket the runner serves in a directory
// bind-mounted into the container, so a task can report progress even
// with no network at all. It forwards only the task's own progress.
const (
	apiSocketPath = TaskFilesDir + "/api.sock"
	apiSocketURL  = "http://mayfly"
)

type apiSocket struct {
	dir string
	srv *http.Server
}

func (r *Runner) openAPISocket(job wire.Job) (*apiSocket, error) {
	dir := filepath.Join(r.cfg.RunDir, job.TaskID)
	// A socket left by an earlier attempt of this task on this runner (a
	// crash leaves them) would make the listen fail.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear task socket directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create task socket directory: %w", err)
	}
	// The task user must reach the socket, whatever the umask.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open task socket directory: %w", err)
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen on task socket: %w", err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open task socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2/projects/{project}/tasks/{id}/progress", func(w http.ResponseWriter, req *http.Request) {
		if req.PathValue("id") != job.TaskID || req.PathValue("project") != job.ProjectID {
			sockError(w, http.StatusForbidden, "From inside a task only that task's own progress can be reported")
			return
		}
		var p wire.Progress
		if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&p); err != nil {
			sockError(w, http.StatusBadRequest, "Malformed JSON: "+err.Error())
			return
		}
		// The socket is private to this task's container, so it is
		// credential enough; a token, when sent, must still be right.
		tok := bearer(req)
		if tok == "" {
			tok = job.TaskToken
		}
		if err := r.queue.ReportProgress(req.Context(), tok, job.TaskID, p); err != nil {
			sockError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"msg":"Progress set"}`+"\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		sockError(w, http.StatusNotFound, "From inside a task only POST /2/projects/{project}/tasks/{id}/progress is served")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return &apiSocket{dir: dir, srv: srv}, nil
}

func (a *apiSocket) Close() {
	a.srv.Close()
	os.RemoveAll(a.dir)
}

func bearer(req *http.Request) string {
	if h := req.Header.Get("Authorization"); h != "" {
		if _, tok, ok := strings.Cut(h, " "); ok {
			return strings.TrimSpace(tok)
		}
	}
	return req.URL.Query().Get("oauth")
}

func sockError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.Error{Msg: msg})
}
