// Package launch is the first program of a warm container: a container
// created ahead of demand, before its task, its command or its environment
// were known. The driver writes the task's command line and environment to
// a file the container sees and starts it; the launcher reads that file and
// replaces itself with the task's program.
//
// It runs inside images that may have nothing but the task's program (no
// shell, no libc), so it is a static binary of its own and uses nothing but
// the system calls of os and syscall: its start is a few hundred
// microseconds of the task's latency.
package launch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// magic opens every launch file, so a file of another kind (or an older
// format) is refused rather than run.
const magic = "mayfly-launch/2"

// maxLaunch bounds a launch file: a command line and environment larger
// than the kernel takes (ARG_MAX) are refused by exec anyway.
const maxLaunch = 16 << 20

// Encode returns the launch file that runs argv with env merged over the
// container's own environment: magic, the length of the rest, the number
// of arguments, the arguments and the variables. Fields are NUL-terminated
// (no argument or variable can contain a NUL, so nothing needs quoting),
// and the length lets the launcher read it from a pipe that stays open.
func Encode(argv, env []string) []byte {
	var body bytes.Buffer
	body.WriteString(strconv.Itoa(len(argv)))
	body.WriteByte(0)
	for _, s := range argv {
		body.WriteString(s)
		body.WriteByte(0)
	}
	for _, s := range env {
		body.WriteString(s)
		body.WriteByte(0)
	}
	var b bytes.Buffer
	b.WriteString(magic)
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(body.Len()))
	b.WriteByte(0)
	b.Write(body.Bytes())
	return b.Bytes()
}

// Read reads one launch file from r, which may stay open past its end.
func Read(r io.Reader) (argv, env []string, err error) {
	head := make([]byte, 0, 32)
	var one [1]byte
	for nul := 0; nul < 2; {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return nil, nil, fmt.Errorf("launch file is empty or truncated: %w", err)
		}
		head = append(head, one[0])
		if one[0] == 0 {
			nul++
		}
		if len(head) > len(magic)+16 {
			return nil, nil, errors.New("not a launch file")
		}
	}
	fields := strings.Split(string(head[:len(head)-1]), "\x00")
	if fields[0] != magic {
		return nil, nil, errors.New("not a launch file")
	}
	n, err := strconv.Atoi(fields[1])
	if err != nil || n < 1 || n > maxLaunch {
		return nil, nil, fmt.Errorf("launch file: bad length %q", fields[1])
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, nil, fmt.Errorf("launch file is truncated: %w", err)
	}
	return decodeBody(body)
}

// Decode parses a whole launch file.
func Decode(data []byte) (argv, env []string, err error) {
	return Read(bytes.NewReader(data))
}

func decodeBody(body []byte) (argv, env []string, err error) {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return nil, nil, errors.New("launch file is truncated")
	}
	fields := strings.Split(string(body[:len(body)-1]), "\x00")
	n, err := strconv.Atoi(fields[0])
	if err != nil || n < 1 || n > len(fields)-1 {
		return nil, nil, fmt.Errorf("launch file: bad argument count %q", fields[0])
	}
	return fields[1 : 1+n], fields[1+n:], nil
}

// MergeEnv applies env over base as the Docker engine applies a
// container's variables over its image's: a variable replaces the one of
// the same name in place, a new one is appended, and a bare NAME (no "=")
// removes NAME.
func MergeEnv(base, env []string) []string {
	out := append([]string(nil), base...)
	index := make(map[string]int, len(out))
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	var drop map[int]bool
	for _, kv := range env {
		k, _, hasValue := strings.Cut(kv, "=")
		i, ok := index[k]
		switch {
		case !hasValue:
			if ok {
				if drop == nil {
					drop = map[int]bool{}
				}
				drop[i] = true
				delete(index, k)
			}
		case ok:
			out[i] = kv
		default:
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	if drop == nil {
		return out
	}
	kept := out[:0]
	for i, kv := range out {
		if !drop[i] {
			kept = append(kept, kv)
		}
	}
	return kept
}

// LookPath finds name as the container runtime does before it execs a
// task's program: a name with a slash is taken as is, else the first
// executable regular file of that name in PATH (of env) is.
func LookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Mode&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH", name)
}

// Main is the launcher: it reads the launch file named by its first
// argument and execs the task's program. It returns only if that fails,
// after saying why on stderr, with the status a shell gives (127: not
// found, 126: not executable).
func Main() int {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "mayfly-launch: usage: mayfly-launch LAUNCH-FILE")
		return 125
	}
	// A FIFO: this waits until the task comes. Close-on-exec, so the
	// task inherits nothing of it.
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "mayfly-launch: read the task's command: %v\n", err)
		return 125
	}
	argv, env, err := Read(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mayfly-launch: %s: %v\n", os.Args[1], err)
		return 125
	}
	env = MergeEnv(os.Environ(), env)
	path, err := LookPath(argv[0], env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mayfly-launch: exec %s\n", err)
		return 127
	}
	err = syscall.Exec(path, argv, env)
	fmt.Fprintf(os.Stderr, "mayfly-launch: exec %q: %v\n", path, err)
	if errors.Is(err, syscall.ENOENT) {
		return 127
	}
	return 126
}
