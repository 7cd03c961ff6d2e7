package api_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Sixty clients read a 10 MiB log at once and stall after the headers, as
// slow or hostile readers do. A handler that loads the log whole holds 10
// MiB each (600 MiB); a streaming one holds a read batch each.
func TestParallelBigLogReadsStayBounded(t *testing.T) {
	b := setup(t, service.Config{})
	b.pushHello()
	st, body := b.queue(`{"tasks":[{"code_name":"hello"}]}`)
	if st != 200 {
		t.Fatalf("queue: %d %s", st, body)
	}
	taskID := decode[wire.QueueResponse](t, body).Tasks[0].ID
	jobs, err := b.svc.Lease(t.Context(), wire.LeaseRequest{RunnerID: "r1", Max: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("lease: %v %v", jobs, err)
	}

	const (
		logBytes  = 10 << 20
		chunkSize = 64 << 10 // what a runner ships at a time
		readers   = 60
	)
	want := sha256.New()
	chunk := make([]byte, chunkSize)
	for i := 0; i < logBytes/chunkSize; i++ {
		for j := range chunk {
			chunk[j] = byte('a' + (i+j)%26)
		}
		chunk[len(chunk)-1] = '\n'
		if err := b.st.AppendLog(t.Context(), store.AppendLogParams{TaskID: taskID, RunnerID: "r1", Attempt: 1, Data: chunk}); err != nil {
			t.Fatal(err)
		}
		want.Write(chunk)
	}
	wantSum := want.Sum(nil)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: readers, DisableCompression: true}}
	defer client.CloseIdleConnections()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc

	var (
		headers sync.WaitGroup
		done    sync.WaitGroup
		release = make(chan struct{})
		errs    = make(chan error, readers)
	)
	for range readers {
		headers.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequest("GET", b.url("/tasks/"+taskID+"/log"), nil)
			req.Header.Set("Authorization", "OAuth "+b.token)
			resp, err := client.Do(req)
			headers.Done()
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			<-release
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.StatusCode != 200 || n != logBytes || !bytes.Equal(h.Sum(nil), wantSum):
				errs <- fmt.Errorf("status %d, %d bytes, want 200 and the %d bytes written", resp.StatusCode, n, logBytes)
			}
		}()
	}
	headers.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	growth := int64(ms.HeapAlloc) - int64(before)
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("heap growth with %d readers of a %d MiB log stalled after the headers: %.1f MiB", readers, logBytes>>20, float64(growth)/(1<<20))
	// Loading whole costs readers x 10 MiB = 600 MiB; streaming a few
	// hundred KiB per reader.
	if limit := int64(100 << 20); growth > limit {
		t.Fatalf("heap grew by %d MiB, want under %d MiB: the log is held whole per request", growth>>20, limit>>20)
	}

	// Still 404 until a task wrote output.
	st, body = b.queue(`{"tasks":[{"code_name":"hello"}]}`)
	if st != 200 {
		t.Fatalf("queue: %d %s", st, body)
	}
	quiet := decode[wire.QueueResponse](t, body).Tasks[0].ID
	st, body = b.do("GET", b.url("/tasks/"+quiet+"/log"), nil)
	wantErr(t, st, body, 404, "not written any output")
	st, body = b.do("GET", b.url("/tasks/"+quiet+"/outlog"), nil)
	wantErr(t, st, body, 404, "not written any output")
}
