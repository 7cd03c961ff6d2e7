package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// source returns a ConfigSource whose files and environment are only the
// given ones.
func source(t *testing.T, global, local string, env map[string]string) ConfigSource {
	t.Helper()
	s := ConfigSource{
		Dir:  t.TempDir(),
		Home: t.TempDir(),
		LookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
	}
	if global != "" {
		writeFile(t, filepath.Join(s.Home, ".iron.json"), global)
	}
	if local != "" {
		writeFile(t, filepath.Join(s.Dir, "iron.json"), local)
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		global, local string
		env           map[string]string
		flags         Config
		want          Config
	}{
		{
			name: "defaults",
			want: Config{URL: "http://127.0.0.1:8080"},
		},
		{
			name:   "global file",
			global: `{"token":"gt","project_id":"gp","host":"jobs.example.com","scheme":"https","port":443}`,
			want:   Config{URL: "https://jobs.example.com:443", Token: "gt", ProjectID: "gp"},
		},
		{
			name:   "local file beats global file, key by key",
			global: `{"token":"gt","project_id":"gp","host":"global.example.com"}`,
			local:  `{"project_id":"lp","port":"9090"}`,
			want:   Config{URL: "http://global.example.com:9090", Token: "gt", ProjectID: "lp"},
		},
		{
			name:  "iron_worker section beats the top level",
			local: `{"token":"top","iron_worker":{"token":"worker","project_id":"wp"}}`,
			want:  Config{URL: "http://127.0.0.1:8080", Token: "worker", ProjectID: "wp"},
		},
		{
			name:  "host only keeps scheme and port",
			local: `{"host":"mayfly.internal"}`,
			want:  Config{URL: "http://mayfly.internal:8080"},
		},
		{
			name:  "IRON env beats files",
			local: `{"token":"ft","project_id":"fp","host":"file.example.com"}`,
			env:   map[string]string{"IRON_TOKEN": "et", "IRON_PROJECT_ID": "ep", "IRON_HOST": "env.example.com:81"},
			want:  Config{URL: "http://env.example.com:81", Token: "et", ProjectID: "ep"},
		},
		{
			name: "IRON_HOST as a URL, IRON_SCHEME and IRON_PORT",
			env:  map[string]string{"IRON_HOST": "https://env.example.com", "IRON_PORT": "8443"},
			want: Config{URL: "https://env.example.com:8443"},
		},
		{
			name: "MAYFLY env beats IRON env",
			env: map[string]string{
				"IRON_TOKEN": "it", "IRON_PROJECT_ID": "ip", "IRON_HOST": "iron.example.com",
				"MAYFLY_URL": "https://mayfly.example.com/prefix/", "MAYFLY_TOKEN": "mt", "MAYFLY_PROJECT": "mp",
			},
			want: Config{URL: "https://mayfly.example.com/prefix", Token: "mt", ProjectID: "mp"},
		},
		{
			name: "empty env values override nothing",
			env:  map[string]string{"IRON_TOKEN": "it", "MAYFLY_TOKEN": "", "MAYFLY_URL": " "},
			want: Config{URL: "http://127.0.0.1:8080", Token: "it"},
		},
		{
			name:  "flags beat everything",
			local: `{"token":"ft","project_id":"fp"}`,
			env:   map[string]string{"MAYFLY_URL": "http://env:1", "MAYFLY_TOKEN": "mt", "MAYFLY_PROJECT": "mp"},
			flags: Config{URL: "localhost:9999", Token: "flag-token"},
			want:  Config{URL: "http://localhost:9999", Token: "flag-token", ProjectID: "mp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := source(t, tt.global, tt.local, tt.env).Load(tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Load = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		local       string
		env         map[string]string
		flags       Config
		wantInError string
	}{
		{name: "broken iron.json", local: `{"token":`, wantInError: "iron.json"},
		{name: "bad scheme in file", local: `{"scheme":"ftp"}`, wantInError: "ftp"},
		{name: "bad MAYFLY_URL", env: map[string]string{"MAYFLY_URL": "ftp://x"}, wantInError: "MAYFLY_URL"},
		{name: "bad flag", flags: Config{URL: "http://"}, wantInError: "--url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := source(t, "", tt.local, tt.env).Load(tt.flags)
			if err == nil || !strings.Contains(err.Error(), tt.wantInError) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.wantInError)
			}
		})
	}
}

func TestConfigClient(t *testing.T) {
	t.Parallel()
	c := Config{URL: "http://h:1/", Token: "t", ProjectID: "p"}.Client()
	if c.base != "http://h:1" || c.token != "t" || c.project != "p" {
		t.Errorf("client = %+v", c)
	}
}
