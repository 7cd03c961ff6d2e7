package fake

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// A runner process on the fake driver runs tens of thousands of tasks in
// a soak: what the driver keeps of each must not grow with their number.
// (It kept every spec, and with it each task's log writer, and the runner
// of an 18-minute chaos run grew from 30 to 95 MB.)
func TestManyContainersHoldNoMemory(t *testing.T) {
	d := New()
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const n, logBuf = 5000, 16 << 10
	for i := range n {
		out := bytes.NewBuffer(make([]byte, 0, logBuf)) // a task's log buffer
		h, err := d.Start(ctx, driver.Spec{TaskID: "t", RunnerID: "r", Output: out, Env: []string{"I=" + string(rune('a'+i%26))}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		h.Destroy(ctx)
	}
	grew := int64(heap()) - int64(before)
	t.Logf("%d containers started and destroyed: heap %+d KiB", n, grew>>10)
	// Keeping each task's log buffer would be n*logBuf = 80 MB.
	if grew > 8<<20 {
		t.Fatalf("heap grew %d MiB over %d containers", grew>>20, n)
	}
	if st := d.Stats(); st.Live != 0 || st.Starts != n {
		t.Fatalf("stats %+v", st)
	}
	if got := len(d.Specs()); got != keptSpecs {
		t.Fatalf("%d specs kept, want the latest %d", got, keptSpecs)
	}
}
