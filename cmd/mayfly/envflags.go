package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Flag defaults come from MAYFLY_* variables so every setting can be given
// either way; a flag on the command line still wins. A variable that does
// not parse is remembered in envErrs and refused when the command runs.

var envErrs []error

func bad(name, v string, err error) {
	envErrs = append(envErrs, fmt.Errorf("environment variable %s=%q: %w", name, v, err))
}

func envStr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envBool(name string, def bool) bool {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		bad(name, v, err)
		return def
	}
	return b
}

func envInt(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		bad(name, v, err)
		return def
	}
	return n
}

func envInt64(name string, def int64) int64 {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		bad(name, v, err)
		return def
	}
	return n
}

func envFloat(name string, def float64) float64 {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		bad(name, v, err)
		return def
	}
	return n
}

func envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		bad(name, v, err)
		return def
	}
	return d
}

func envList(name string, def []string) []string {
	if v, ok := os.LookupEnv(name); ok {
		return strings.Split(v, ",")
	}
	return def
}
