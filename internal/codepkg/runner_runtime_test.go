package codepkg

import "testing"

func TestLineRuntime(t *testing.T) {
	for line, want := range map[string]string{
		"node hello.js":                     "node",
		"  exec node hello.js \"$@\"":       "node",
		"/usr/bin/nodejs x.js":              "node",
		"RUBYLIB=lib ruby __runner__.rb":    "ruby",
		"python3 -u main.py":                "python",
		"php worker.php":                    "php",
		"# node is not run here":            "",
		"PATH=.:./bin:$PATH":                "",
		"export PATH":                       "",
		"cd \"$(root \"$@\")\"":             "",
		"LD_LIBRARY_PATH=.:./lib java -jar": "",
		"":                                  "",
	} {
		if got := lineRuntime(line); got != want {
			t.Errorf("lineRuntime(%q) = %q, want %q", line, got, want)
		}
	}
}
