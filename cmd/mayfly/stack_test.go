package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestStackBuildUnknown(t *testing.T) {
	t.Parallel()
	res := runCLI(t, nil, nil, "", "stack", "build", "cobol-85")
	if res.code == 0 || !strings.Contains(res.stderr, `unknown stack "cobol-85"`) || !strings.Contains(res.stderr, "python-3.11") {
		t.Errorf("exit %d, stderr %q; want a refusal naming the known stacks", res.code, res.stderr)
	}
}

func TestStackBuildAliasAndLs(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	testenv.StackImage(t, "python-3.11")

	// Built and unchanged: the alias finds the stack and nothing is built.
	res := runCLI(t, nil, nil, "", "stack", "build", "python", "busybox").ok(t)
	for _, want := range []string{"mayfly/stack:python-3.11 is current", "mayfly/stack:busybox is current"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stack build output lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, nil, nil, "", "stack", "ls").ok(t)
	for _, re := range []string{
		`(?m)^STACK\s+ALIASES\s+IMAGE\s+BUILT\s+SIZE$`,
		`(?m)^python-3\.11\s+python\s+mayfly/stack:python-3\.11\s+true\s+[0-9.]+ MB$`,
		`(?m)^busybox\s+-\s+mayfly/stack:busybox\s+true\s+[0-9.]+ MB$`,
		`(?m)^node-18\s+node\s+mayfly/stack:node-18\s+(true|false)\s`,
		`(?m)^binary\s+-\s`, `(?m)^ruby-3\.1\s+ruby\s`, `(?m)^php-8\.2\s+php\s`,
	} {
		if !regexp.MustCompile(re).MatchString(res.stdout) {
			t.Errorf("stack ls output does not match %s:\n%s", re, res.stdout)
		}
	}
}
