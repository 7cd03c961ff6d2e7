//go:build !unix

package api

// fileLimit is unknown here; the cap then rests on DefaultMaxConns' ceiling.
func fileLimit() int { return 1 << 30 }
