package testenv

import "sort"

// Span is when something ran, in the units of one clock (tasks read the
// host's /proc/uptime, one clock for every container).
type Span struct{ Start, End float64 }

// MostAtOnce sweeps the spans' starts and ends in time order and returns
// the most that overlapped. An end at the same reading as a start counts
// first: the slot had to be free for the start.
func MostAtOnce(spans []Span) int {
	type edge struct {
		at    float64
		delta int
	}
	edges := make([]edge, 0, 2*len(spans))
	for _, s := range spans {
		edges = append(edges, edge{s.Start, +1}, edge{s.End, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	running, most := 0, 0
	for _, e := range edges {
		running += e.delta
		most = max(most, running)
	}
	return most
}
