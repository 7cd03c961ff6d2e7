//go:build race

package sqlite

// raceEnabled: the race detector instruments SQLite's own code too, which
// makes filling a million rows take many minutes.
const raceEnabled = true
