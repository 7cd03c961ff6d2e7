package runner_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// setupStacks is setup with the real stacks: the service checks stack names
// against the ones the binary carries (aliases resolved), and the runner
// maps each stack to its own image, as in production. The stacks named are
// built first (once per test process).
func setupStacks(t *testing.T, stacks ...string) *bundle {
	t.Helper()
	for _, s := range stacks {
		testenv.StackImage(t, s)
	}
	return newBundle(t, service.Config{KnownStacks: stack.Names()}, 2, 256<<20, stack.Image)
}

// pushStack uploads a code as push does and returns the stack it was
// stored with.
func (b *bundle) pushStack(name string, up wire.CodeUpload, files map[string]string) string {
	b.t.Helper()
	up.Name = name
	c, err := b.svc.UploadCode(context.Background(), b.project, up, bytes.NewReader(makeZip(b.t, files)))
	if err != nil {
		b.t.Fatalf("upload %s: %v", name, err)
	}
	return c.Stack
}

// runOK queues one task of code with payload, waits for it to complete and
// returns its log.
func (b *bundle) runOK(code, payload string) string {
	b.t.Helper()
	taskID := b.queue(wire.NewTask{CodeName: code, Payload: payload})[0]
	tk := b.waitEnd(taskID)
	log := b.log(taskID)
	if tk.Status != store.StatusComplete {
		b.t.Fatalf("task of %s: status %s, msg %q; log:\n%s", code, tk.Status, tk.Msg, log)
	}
	return strings.ReplaceAll(log, taskID, "TASK_ID")
}

func wantLines(t *testing.T, log string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w+"\n") {
			t.Errorf("log lacks line %q:\n%s", w, log)
		}
	}
}

const pythonWorker = `import json, os, sys

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(args["-payload"]) as f:
    payload = json.load(f)
print("python %d.%d" % sys.version_info[:2])
print("hello %s from task %s in %s" % (payload["name"], args["-id"], os.getcwd()))
print("uid %d" % os.getuid())
if payload.get("fail"):
    raise ValueError("bad payload")
`

func TestPythonWorker(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "python-3.11")
	// No stack: the runtime picks it.
	if s := b.pushStack("py", wire.CodeUpload{Runtime: "python", FileName: "worker.py"}, map[string]string{"worker.py": pythonWorker}); s != "python-3.11" {
		t.Errorf("code stack %q, want python-3.11", s)
	}
	log := b.runOK("py", `{"name":"python"}`)
	wantLines(t, log, "python 3.11", "hello python from task TASK_ID in /mnt/task", "uid 65534")

	// An exception ends the task in error with the traceback in its msg.
	taskID := b.queue(wire.NewTask{CodeName: "py", Payload: `{"name":"x","fail":true}`})[0]
	tk := b.waitEnd(taskID)
	if tk.Status != store.StatusError || tk.ExitCode == nil || *tk.ExitCode != 1 || !strings.Contains(tk.Msg, "ValueError: bad payload") {
		t.Errorf("failing task: status %s, exit %v, msg %q", tk.Status, tk.ExitCode, tk.Msg)
	}
}

const nodeWorker = `const fs = require('fs');

// The IronWorker contract: -payload FILE -config FILE -id ID -d DIR.
const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^-/, '')] = process.argv[i + 1];
}
const payload = JSON.parse(fs.readFileSync(args.payload, 'utf8'));
const config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
console.log('node ' + process.versions.node.split('.')[0]);
console.log('hello ' + payload.name + ' from task ' + args.id + ' in ' + args.d);
console.log('config ' + config.db + ', cwd ' + process.cwd());
`

func TestNodeWorker(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "node-18")
	// The alias without the version is stored as the stack it names.
	if s := b.pushStack("js", wire.CodeUpload{Runtime: "node", FileName: "worker.js", Stack: "node", Config: `{"db":"test"}`},
		map[string]string{"worker.js": nodeWorker}); s != "node-18" {
		t.Errorf("code stack %q, want node-18 (alias node resolved)", s)
	}
	log := b.runOK("js", `{"name":"node"}`)
	wantLines(t, log, "node 18", "hello node from task TASK_ID in /mnt/task", "config test, cwd /mnt/task")
}

// The shape of the packages the official Node client uploads: runtime sh,
// file_name __runner__.sh, and the stack named alongside.
const runnerScript = `#!/bin/sh
cd "$(dirname "$0")"
node worker.js "$@"
`

func TestRunnerScriptPackage(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "node-18", "busybox")
	b.push("client-package", wire.CodeUpload{Runtime: "sh", FileName: "__runner__.sh", Stack: "node-18", Config: `{"db":"client"}`},
		map[string]string{"__runner__.sh": runnerScript, "worker.js": nodeWorker})
	log := b.runOK("client-package", `{"name":"runner"}`)
	wantLines(t, log, "node 18", "hello runner from task TASK_ID in /mnt/task", "config client, cwd /mnt/task")

	// Without the stack, runtime sh means busybox, which has no node: the
	// task fails and says why.
	if s := b.pushStack("no-stack", wire.CodeUpload{Runtime: "sh", FileName: "__runner__.sh"},
		map[string]string{"__runner__.sh": runnerScript, "worker.js": nodeWorker}); s != "busybox" {
		t.Fatalf("stack %q, want busybox", s)
	}
	taskID := b.queue(wire.NewTask{CodeName: "no-stack", Payload: `{}`})[0]
	tk := b.waitEnd(taskID)
	if tk.Status != store.StatusError || tk.ExitCode == nil || *tk.ExitCode != 127 || !strings.Contains(tk.Msg, "node: not found") {
		t.Errorf("on busybox: status %s, exit %v, msg %q", tk.Status, tk.ExitCode, tk.Msg)
	}
}

const rubyWorker = `require 'json'

args = Hash[*ARGV]
payload = JSON.parse(File.read(args['-payload']))
puts "ruby #{RUBY_VERSION.split('.')[0, 2].join('.')}"
puts "hello #{payload['name']} from task #{args['-id']} in #{Dir.pwd}"
`

func TestRubyWorker(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "ruby-3.1")
	if s := b.pushStack("rb", wire.CodeUpload{Runtime: "ruby", FileName: "worker.rb"}, map[string]string{"worker.rb": rubyWorker}); s != "ruby-3.1" {
		t.Errorf("code stack %q, want ruby-3.1", s)
	}
	log := b.runOK("rb", `{"name":"ruby"}`)
	wantLines(t, log, "ruby 3.1", "hello ruby from task TASK_ID in /mnt/task")
}

const phpWorker = `<?php
$args = [];
for ($i = 1; $i + 1 < count($argv); $i += 2) {
    $args[$argv[$i]] = $argv[$i + 1];
}
$payload = json_decode(file_get_contents($args['-payload']), true);
echo "php " . PHP_MAJOR_VERSION . "." . PHP_MINOR_VERSION . "\n";
echo "hello " . $payload['name'] . " from task " . $args['-id'] . " in " . getcwd() . "\n";
echo "env " . getenv('TASK_ID') . "\n";
`

func TestPHPWorker(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "php-8.2")
	if s := b.pushStack("php", wire.CodeUpload{Runtime: "php", FileName: "worker.php", Stack: "php"}, map[string]string{"worker.php": phpWorker}); s != "php-8.2" {
		t.Errorf("code stack %q, want php-8.2", s)
	}
	log := b.runOK("php", `{"name":"php"}`)
	wantLines(t, log, "php 8.2", "hello php from task TASK_ID in /mnt/task", "env TASK_ID")
}

const goWorker = `package main

import (
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func main() {
	payloadFile := flag.String("payload", "", "")
	id := flag.String("id", "", "")
	dir := flag.String("d", "", "")
	flag.String("config", "", "")
	flag.Parse()
	data, err := os.ReadFile(*payloadFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var p struct{ Name string }
	if err := json.Unmarshal(data, &p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("hello %s from task %s in %s\n", p.Name, *id, *dir)
	// The stack's CA certificates are there for programs that call out.
	pool, err := x509.SystemCertPool()
	fmt.Printf("ca certificates: %v\n", err == nil && !pool.Equal(x509.NewCertPool()))
}
`

// buildGoWorker compiles goWorker as a static Linux program.
func buildGoWorker(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Integration(t, "go command", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goWorker), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", "worker", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the worker: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "worker"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestBinaryWorker(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "binary")
	if s := b.pushStack("bin", wire.CodeUpload{Runtime: "binary", FileName: "worker"}, map[string]string{"worker": buildGoWorker(t)}); s != "binary" {
		t.Errorf("code stack %q, want binary", s)
	}
	log := b.runOK("bin", `{"name":"go"}`)
	wantLines(t, log, "hello go from task TASK_ID in /mnt/task", "ca certificates: true")
}

func TestUnknownStackRefused(t *testing.T) {
	t.Parallel()
	a := assemblytest.Start(t, assembly.Config{Service: service.Config{KnownStacks: stack.Names()}})
	svc, boot := a.Service, a.Bootstrap
	zip := makeZip(t, map[string]string{"w.py": "print(1)"})
	_, err := svc.UploadCode(context.Background(), boot.ProjectID,
		wire.CodeUpload{Name: "x", Runtime: "python", FileName: "w.py", Stack: "python-2.7"}, strings.NewReader(string(zip)))
	if !errors.Is(err, service.ErrInvalid) || !strings.Contains(err.Error(), `"python-2.7"`) || !strings.Contains(err.Error(), "python-3.11") {
		t.Errorf("upload on an unknown stack: %v; want ErrInvalid naming it and the known ones", err)
	}
}
