package bench

import (
	"strings"
	"testing"
)

func TestWriteRepeatability(t *testing.T) {
	run := func(q, pg float64) *Results {
		return &Results{
			Queue:   &QueueResult{Target: target("queue", q, ">=", 1)},
			QueuePG: &QueueResult{Target: target("queue-pg", pg, ">=", 1)},
		}
	}
	var b strings.Builder
	if err := WriteRepeatability(&b, []*Results{run(1.3, 0.5), run(1.1, 1.2), run(0.9, 0.4)}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"3 runs",
		"| queue | 1.30, 1.10, 0.90 | **1.10** | 0.90 - 1.30 | >= 1 | 2 of 3 |",
		"| queue-pg | 0.50, 1.20, 0.40 | **0.50** | 0.40 - 1.20 | >= 1 | 1 of 3 |",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
	if got := median([]float64{1, 2, 3, 4}); got != 2.5 {
		t.Fatalf("median of four = %v", got)
	}
}
