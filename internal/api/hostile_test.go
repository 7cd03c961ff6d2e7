package api_test

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The tests in this file measure the heap of the whole test process, so
// they must not run in parallel with anything else.

// heapWatch samples the heap in use until stop, and reports how far it grew
// over the level at its start.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	done chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapInuse, done: make(chan struct{})}
	h.peak.Store(ms.HeapInuse)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.done:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// growth stops the watch and returns the peak growth in bytes.
func (h *heapWatch) growth() int64 {
	close(h.done)
	h.wg.Wait()
	return int64(h.peak.Load()) - int64(h.base)
}

// writeDirectoryBomb writes, streaming, a zip of one stored entry followed
// by records central directory records that all point at it: 47 bytes
// each. With zip64 the end records declare the true count; without, the
// 16-bit count field holds records mod 65536, which archive/zip accepts.
func writeDirectoryBomb(t *testing.T, path string, records int, zip64 bool) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	le := binary.LittleEndian
	w := bufio.NewWriterSize(f, 1<<20)
	local := make([]byte, 30, 31)
	le.PutUint32(local[0:], 0x04034b50)
	le.PutUint16(local[4:], 20)
	le.PutUint16(local[26:], 1)
	local = append(local, 'a')
	w.Write(local)
	rec := make([]byte, 46, 47)
	le.PutUint32(rec[0:], 0x02014b50)
	le.PutUint16(rec[4:], 20)
	le.PutUint16(rec[6:], 20)
	le.PutUint16(rec[28:], 1)
	rec = append(rec, 'a')
	for range records {
		w.Write(rec)
	}
	dirSize := uint64(records * len(rec))
	end := make([]byte, 22)
	le.PutUint32(end[0:], 0x06054b50)
	if zip64 {
		z := make([]byte, 56)
		le.PutUint32(z[0:], 0x06064b50)
		le.PutUint64(z[4:], 44)
		le.PutUint64(z[24:], uint64(records))
		le.PutUint64(z[32:], uint64(records))
		le.PutUint64(z[40:], dirSize)
		le.PutUint64(z[48:], uint64(len(local)))
		loc := make([]byte, 20)
		le.PutUint32(loc[0:], 0x07064b50)
		le.PutUint64(loc[8:], uint64(len(local))+dirSize)
		le.PutUint32(loc[16:], 1)
		w.Write(z)
		w.Write(loc)
		le.PutUint16(end[8:], 0xffff)
		le.PutUint16(end[10:], 0xffff)
		le.PutUint32(end[12:], 0xffffffff)
		le.PutUint32(end[16:], 0xffffffff)
	} else {
		le.PutUint16(end[8:], uint16(records))
		le.PutUint16(end[10:], uint16(records))
		le.PutUint32(end[12:], uint32(dirSize))
		le.PutUint32(end[16:], uint32(len(local)))
	}
	w.Write(end)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// uploadFile posts a code whose zip is streamed from path, so the client
// side holds none of it.
func (b *bundle) uploadFile(data, path string) (int, []byte) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		defer f.Close()
		mw.WriteField("data", data)
		fw, _ := mw.CreateFormFile("file", "code.zip")
		if _, err := io.Copy(fw, f); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(mw.Close())
	}()
	req, err := http.NewRequest("POST", b.url("/codes"), pr)
	if err != nil {
		b.t.Error(err)
		return 0, nil
	}
	req.Header.Set("Authorization", "OAuth "+b.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestUploadCentralDirectoryBomb uploads zips whose central directory holds
// two million records pointing at one entry, one at a time and four at
// once. Each must be refused with 400 before archive/zip parses the
// directory, which would cost about half a gigabyte per upload.
func TestUploadCentralDirectoryBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MB of hostile zips")
	}
	b := setup(t, service.Config{})
	// Two million records, and 1 mod 65536 so that the 16-bit count
	// field of the zip without zip64 says "one entry".
	const records = 30<<16 + 1
	dir := t.TempDir()
	declared := filepath.Join(dir, "declared.zip")
	hidden := filepath.Join(dir, "hidden.zip")
	size := writeDirectoryBomb(t, declared, records, true)
	writeDirectoryBomb(t, hidden, records, false)
	t.Logf("hostile zips: %d MB, %d directory records", size>>20, records)

	const limit = 64 << 20
	cases := []struct {
		name, path, msg string
		parallel        int
	}{
		{"count declared", declared, "declares 1966081 entries", 1},
		{"count hidden in 16 bits", hidden, "out of proportion", 1},
		{"four at once", declared, "declares 1966081 entries", 4},
		{"four hidden at once", hidden, "out of proportion", 4},
	}
	for _, c := range cases {
		h := watchHeap()
		var wg sync.WaitGroup
		for range c.parallel {
			wg.Go(func() {
				st, body := b.uploadFile(`{"name":"bomb","runtime":"sh","file_name":"a"}`, c.path)
				if st != 0 {
					wantErr(t, st, body, http.StatusBadRequest, c.msg)
				}
			})
		}
		wg.Wait()
		grew := h.growth()
		t.Logf("%s: heap grew by %d MB", c.name, grew>>20)
		if grew > limit {
			t.Errorf("%s: heap grew by %d MB, want under %d MB", c.name, grew>>20, limit>>20)
		}
	}
	// Nothing was kept.
	st, body := b.do("GET", b.url("/codes"), nil)
	if l := decode[wire.CodeList](t, body); st != 200 || len(l.Codes) != 0 {
		t.Fatalf("codes after refused uploads: %s", body)
	}
	if m, _ := filepath.Glob(filepath.Join(b.dataDir, "blobs", "packages", "*")); len(m) != 0 {
		t.Fatalf("refused uploads left blobs: %v", m)
	}
}

// TestUploadsParseWithinBudget uploads twelve zips at once, each at the
// entry limit with the longest names its directory may carry, so that each
// costs archive/zip about 20 MB to parse. Their checks wait for each other under
// the server's parse budget instead of taking it all at once; each is
// refused for its last entry.
func TestUploadsParseWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 12 zips of 10 MB")
	}
	b := setup(t, service.Config{})
	path := filepath.Join(t.TempDir(), "wide.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	long := strings.Repeat("n", 900)
	for i := range 10_000 {
		name := fmt.Sprintf("d/%s%05d", long, i)
		if i == 9_999 {
			name = "../escape"
		}
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	zw = nil
	// Two checks at a time fit the budget; all twelve at once take about
	// 300 MB.
	const parallel, limit = 12, 130 << 20
	h := watchHeap()
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			st, body := b.uploadFile(`{"name":"wide","runtime":"sh","file_name":"a"}`, path)
			if st != 0 {
				wantErr(t, st, body, http.StatusBadRequest, "climbs out")
			}
		})
	}
	wg.Wait()
	grew := h.growth()
	t.Logf("%d uploads at once: heap grew by %d MB", parallel, grew>>20)
	if grew > limit {
		t.Errorf("heap grew by %d MB, want under %d MB", grew>>20, limit>>20)
	}
}

// repeatReader yields the same byte forever.
type repeatReader byte

func (c repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// bigQueueBody streams {"tasks":[...]} of n tasks whose payloads are each
// size bytes, and returns it with its length.
func bigQueueBody(code string, n int, size int64) (io.Reader, int64) {
	var parts []io.Reader
	var total int64
	add := func(r io.Reader, l int64) { parts = append(parts, r); total += l }
	str := func(s string) { add(strings.NewReader(s), int64(len(s))) }
	str(`{"tasks":[`)
	for i := range n {
		if i > 0 {
			str(",")
		}
		str(`{"code_name":"` + code + `","payload":"`)
		add(io.LimitReader(repeatReader('p'), size), size)
		str(`"}`)
	}
	str(`]}`)
	return io.MultiReader(parts...), total
}

// TestParallelLargeQueuePosts sends eight POST tasks of 60 MB at once, half
// with a Content-Length and half chunked. Each is answered 200 or 503 with
// Retry-After; together they may not take more than the server's body
// budget and what decoding it costs, where each used to cost 140 MB.
func TestParallelLargeQueuePosts(t *testing.T) {
	if testing.Short() {
		t.Skip("posts 480 MB")
	}
	b := setup(t, service.Config{})
	b.pushHello()
	const parallel, tasks, payload = 8, 60, 1000 << 10
	const limit = 400 << 20
	h := watchHeap()
	var wg sync.WaitGroup
	var ok, busy atomic.Int32
	for i := range parallel {
		wg.Go(func() {
			body, n := bigQueueBody("hello", tasks, payload)
			req, err := http.NewRequest("POST", b.url("/tasks"), body)
			if err != nil {
				t.Error(err)
				return
			}
			if i%2 == 0 {
				req.ContentLength = n
			} else {
				req.ContentLength = -1
			}
			req.Header.Set("Authorization", "OAuth "+b.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// Turned away before the whole body was sent.
				t.Logf("post %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			switch resp.StatusCode {
			case http.StatusOK:
				if q := decode[wire.QueueResponse](t, data); len(q.Tasks) != tasks {
					t.Errorf("post %d queued %d tasks", i, len(q.Tasks))
				}
				ok.Add(1)
			case http.StatusServiceUnavailable:
				wantErr(t, resp.StatusCode, data, http.StatusServiceUnavailable, "try again")
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("post %d: 503 without Retry-After", i)
				}
				busy.Add(1)
			default:
				t.Errorf("post %d: %d %s", i, resp.StatusCode, data)
			}
		})
	}
	wg.Wait()
	grew := h.growth()
	t.Logf("%d posts of %d MB: %d queued, %d turned away; heap grew by %d MB", parallel, tasks*payload>>20, ok.Load(), busy.Load(), grew>>20)
	if ok.Load() == 0 {
		t.Errorf("no post got through")
	}
	if grew > limit {
		t.Errorf("heap grew by %d MB, want under %d MB", grew>>20, limit>>20)
	}
}
