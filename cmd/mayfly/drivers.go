package main

import "github.com/mayfly-run/mayfly/internal/driver"

// testDrivers are drivers only test builds have (go build -tags
// fakedriver): tests that run many tasks through real server and runner
// processes start no engine containers.
var testDrivers = map[string]func() driver.Driver{}
