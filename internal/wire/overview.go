package wire

import "time"

// Overview is GET /2/projects/{id}/overview (a Mayfly extension, what the
// dashboard's first page shows).
type Overview struct {
	// Window and Bucket are in seconds; Since is where the window starts.
	Window int          `json:"window"`
	Bucket int          `json:"bucket"`
	Since  time.Time    `json:"since"`
	Codes  []CodeCounts `json:"codes"`
	Series []Point      `json:"series"`
}

// CodeCounts counts one code's tasks: unfinished ones (queued, preparing,
// running) as they are now, ended ones (complete, error, timeout, killed,
// cancelled) over the window.
type CodeCounts struct {
	CodeName string           `json:"code_name"`
	Counts   map[string]int64 `json:"counts"`
}

// Point is what ended in one bucket of the window: how many by status,
// and the queue wait (due time to start) of those that started, in ms.
type Point struct {
	Time      time.Time        `json:"time"`
	Ended     map[string]int64 `json:"ended"`
	Started   int64            `json:"started"`
	WaitAvgMs float64          `json:"wait_avg_ms"`
	WaitMaxMs float64          `json:"wait_max_ms"`
}
