package main

import (
	"os"
	"testing"

	"github.com/mayfly-run/mayfly/internal/testenv"
)

// TestMain stops the PostgreSQL cluster and the S3 server the tests may
// have started (they die with the test binary regardless).
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	testenv.StopS3()
	os.Exit(code)
}
