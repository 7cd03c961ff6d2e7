package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultURL is where a server started with default settings listens.
const DefaultURL = "http://127.0.0.1:8080"

// Config says which server the CLI talks to and as whom.
type Config struct {
	URL       string
	Token     string
	ProjectID string
}

// New returns a client for the configured server and project.
func (c Config) Client(opts ...Option) *Client {
	return New(c.URL, c.Token, c.ProjectID, opts...)
}

// ConfigSource tells LoadConfig where to look. The zero value looks where a
// user expects: the current directory, the home directory and the process
// environment; tests point it elsewhere.
type ConfigSource struct {
	Dir       string                      // holds iron.json; "" is the current directory
	Home      string                      // holds .iron.json; "" is the user's home directory
	LookupEnv func(string) (string, bool) // nil is os.LookupEnv
}

// LoadConfig resolves the configuration from the usual places; see
// ConfigSource.Load.
func LoadConfig(flags Config) (Config, error) {
	return ConfigSource{}.Load(flags)
}

// Load resolves the configuration. Each source overrides the ones before it,
// value by value, and empty values override nothing:
//
//  1. defaults (URL DefaultURL);
//  2. ~/.iron.json, then iron.json in Dir, so a project's own file beats the
//     user's global one: keys token, project_id, host, scheme, port, also
//     inside an "iron_worker" object, which wins over the top level;
//  3. IRON_TOKEN, IRON_PROJECT_ID, IRON_HOST (also IRON_SCHEME, IRON_PORT);
//  4. MAYFLY_URL, MAYFLY_TOKEN, MAYFLY_PROJECT;
//  5. flags: the non-empty fields of flags.
//
// host, scheme and port replace their part of the URL so far, as IronWorker
// configurations are written; MAYFLY_URL and the URL flag replace all of it.
func (s ConfigSource) Load(flags Config) (Config, error) {
	lookup := s.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}

	u, _ := url.Parse(DefaultURL)
	r := resolver{url: u}

	home := s.Home
	if home == "" {
		home, _ = os.UserHomeDir() // without a home there is just no global file
	}
	if home != "" {
		if err := r.file(filepath.Join(home, ".iron.json")); err != nil {
			return Config{}, err
		}
	}
	if err := r.file(filepath.Join(s.Dir, "iron.json")); err != nil {
		return Config{}, err
	}

	r.set(&r.token, env("IRON_TOKEN"))
	r.set(&r.project, env("IRON_PROJECT_ID"))
	if err := r.hostParts(env("IRON_SCHEME"), env("IRON_HOST"), env("IRON_PORT")); err != nil {
		return Config{}, fmt.Errorf("IRON_HOST/IRON_SCHEME/IRON_PORT: %w", err)
	}

	if err := r.fullURL(env("MAYFLY_URL")); err != nil {
		return Config{}, fmt.Errorf("MAYFLY_URL: %w", err)
	}
	r.set(&r.token, env("MAYFLY_TOKEN"))
	r.set(&r.project, env("MAYFLY_PROJECT"))

	if err := r.fullURL(strings.TrimSpace(flags.URL)); err != nil {
		return Config{}, fmt.Errorf("--url: %w", err)
	}
	r.set(&r.token, strings.TrimSpace(flags.Token))
	r.set(&r.project, strings.TrimSpace(flags.ProjectID))

	return Config{
		URL:       strings.TrimRight(r.url.String(), "/"),
		Token:     r.token,
		ProjectID: r.project,
	}, nil
}

// resolver accumulates the configuration while sources are applied.
type resolver struct {
	url     *url.URL
	token   string
	project string
}

func (r *resolver) set(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// ironFile is the part of an iron.json that Mayfly reads.
type ironFile struct {
	Token      string      `json:"token"`
	ProjectID  string      `json:"project_id"`
	Host       string      `json:"host"`
	Scheme     string      `json:"scheme"`
	Port       json.Number `json:"port"` // IronWorker files have it as a number or a string
	IronWorker *ironFile   `json:"iron_worker"`
}

// file applies an iron.json; a missing file is not an error.
func (r *resolver) file(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	var f ironFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	for _, part := range []*ironFile{&f, f.IronWorker} {
		if part == nil {
			continue
		}
		r.set(&r.token, strings.TrimSpace(part.Token))
		r.set(&r.project, strings.TrimSpace(part.ProjectID))
		if err := r.hostParts(strings.TrimSpace(part.Scheme), strings.TrimSpace(part.Host), part.Port.String()); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}

// hostParts replaces parts of the URL. A host may carry its own port, or be
// a whole URL, as some users write IRON_HOST.
func (r *resolver) hostParts(scheme, host, port string) error {
	if strings.Contains(host, "://") {
		if err := r.fullURL(host); err != nil {
			return err
		}
		host = ""
	}
	if scheme != "" {
		if scheme != "http" && scheme != "https" {
			return fmt.Errorf("scheme %q is not http or https", scheme)
		}
		r.url.Scheme = scheme
	}
	if host == "" && port == "" {
		return nil
	}
	h, p := r.url.Hostname(), r.url.Port()
	if host != "" {
		h = host
		if hh, pp, err := net.SplitHostPort(host); err == nil {
			h, p = hh, pp
		}
	}
	if port != "" {
		p = port
	}
	if p == "" {
		r.url.Host = h
		if strings.Contains(h, ":") {
			r.url.Host = "[" + h + "]" // a bare IPv6 address
		}
	} else {
		r.url.Host = net.JoinHostPort(h, p)
	}
	return nil
}

// fullURL replaces the whole URL; a bare host[:port] means http.
func (r *resolver) fullURL(s string) error {
	if s == "" {
		return nil
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme is not http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	r.url = u
	return nil
}
