//go:build fakedriver

package main

import (
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/fake"
)

func init() {
	testDrivers["fake"] = func() driver.Driver { return fake.New() }
}
