package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/client"
)

// version is the version of this binary, set at build time with
// -ldflags "-X main.version=...".
var version = "dev"

// app is what every command shares: where to print, and where the
// configuration comes from, so that tests can run commands in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	src            client.ConfigSource
	flags          client.Config // the persistent flags --url, --token, --project
}

// config resolves the configuration: files, environment, then flags.
func (a *app) config() (client.Config, error) {
	return a.src.Load(a.flags)
}

// client returns a client of the configured project, or says what is
// missing and where to set it.
func (a *app) client() (*client.Client, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, errors.New("no token: use --token, MAYFLY_TOKEN, IRON_TOKEN or \"token\" in iron.json")
	}
	if cfg.ProjectID == "" {
		return nil, errors.New("no project: use --project, MAYFLY_PROJECT, IRON_PROJECT_ID or \"project_id\" in iron.json")
	}
	return cfg.Client(client.WithUserAgent("mayfly-cli/" + version)), nil
}

// adminClient returns a client for calls that name no project (tokens,
// runners): only the token must be set.
func (a *app) adminClient() (*client.Client, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, errors.New("no token: use --token, MAYFLY_TOKEN, IRON_TOKEN or \"token\" in iron.json")
	}
	return cfg.Client(client.WithUserAgent("mayfly-cli/" + version)), nil
}

// exitError ends the program with a code after the command has already told
// the user why, e.g. a waited-for task that failed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, a *app) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ex *exitError
	if errors.As(err, &ex) {
		return ex.code
	}
	fmt.Fprintln(a.stderr, "mayfly:", errorText(err))
	return 1
}

// errorText is what the user reads about err: the server's own message when
// the server refused, which already says what is wrong, else the whole chain.
func errorText(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Msg != "" {
		return ae.Msg
	}
	return err.Error()
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "mayfly",
		Short: "Run short-lived jobs in throw-away containers",
		Long: `Mayfly runs short-lived jobs ("tasks") in fresh containers: upload a code
package (a zip of your program, on a stack such as python-3.11 or node-18, or
a container image), then queue tasks with a payload, on demand, on a schedule
or from a webhook. Each task gets a new container that is destroyed when it
ends. Mayfly is self-hosted and speaks the IronWorker v2 REST API, so
IronWorker clients work against it unchanged.

This binary is both the server (mayfly server) and its command-line client.
The client finds its server and credentials in, from weakest to strongest:
~/.iron.json, ./iron.json (keys token, project_id, host, scheme, port), the
environment (IRON_TOKEN, IRON_PROJECT_ID, IRON_HOST, then MAYFLY_URL,
MAYFLY_TOKEN, MAYFLY_PROJECT) and the flags --url, --token, --project.`,
		Example: `  # Start a server, then push and run a program.
  mayfly server
  export MAYFLY_TOKEN=... MAYFLY_PROJECT=...
  mayfly code push ./hello --stack python-3.11 --runtime python --file-name hello.py
  mayfly task queue hello --payload '{"name":"world"}' --wait`,
		SilenceErrors: true, // run prints errors its own way, as "mayfly: ..."
		// Arguments are checked by now: what fails from here on is the
		// server's or the system's doing, and a usage text would bury the
		// message. This also covers commands that do not use runE.
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			cmd.SilenceUsage = true
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.URL, "url", "", "server URL (env MAYFLY_URL; default "+client.DefaultURL+")")
	pf.StringVar(&a.flags.Token, "token", "", "API token of the project (env MAYFLY_TOKEN or IRON_TOKEN)")
	pf.StringVar(&a.flags.ProjectID, "project", "", "project id (env MAYFLY_PROJECT or IRON_PROJECT_ID)")

	root.AddCommand(
		newServerCmd(),
		withChildren(newRunnerCmd(), newRunnerLsCmd(a)),
		newStackCmd(),
		newCodeCmd(a),
		newTaskCmd(a),
		newScheduleCmd(a),
		newVersionCmd(a),
		newTokenCmd(a),
		newProjectCmd(a),
		newAuditCmd(a),
		newBenchCmd(),
	)
	return root
}

// withChildren adds subcommands to cmd and returns it.
func withChildren(cmd *cobra.Command, children ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(children...)
	return cmd
}

// runE adapts a command's Run method to cobra. Once arguments and flags
// parsed, failures are the server's or the system's, not the user's
// spelling, so usage is no longer printed.
func runE(run func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		return run(cmd.Context(), args)
	}
}

// versionCommand prints the version of the binary, and on request the
// server's.
type versionCommand struct {
	app    *app
	server bool
}

func newVersionCmd(a *app) *cobra.Command {
	c := &versionCommand{app: a}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of mayfly",
		Long:  "Print the version of this mayfly binary; with --server, also the version of the server it talks to.",
		Example: `  mayfly version
  mayfly version --server --url https://mayfly.example.com`,
		Args: cobra.NoArgs,
		RunE: runE(c.Run),
	}
	cmd.Flags().BoolVar(&c.server, "server", false, "also print the server's version")
	return cmd
}

func (c *versionCommand) Run(ctx context.Context, _ []string) error {
	fmt.Fprintf(c.app.stdout, "mayfly %s\n", version)
	if !c.server {
		return nil
	}
	// The version needs no project, so do not insist on one.
	cfg, err := c.app.config()
	if err != nil {
		return err
	}
	v, err := cfg.Client(client.WithUserAgent("mayfly-cli/" + version)).Version(ctx)
	if err != nil {
		return err
	}
	if v.Commit != "" {
		fmt.Fprintf(c.app.stdout, "server %s (commit %s) at %s\n", v.Version, v.Commit, cfg.URL)
	} else {
		fmt.Fprintf(c.app.stdout, "server %s at %s\n", v.Version, cfg.URL)
	}
	return nil
}

// outputFlag is the -o flag of listing and showing commands.
func outputFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "output", "o", "text", "output format: text or json")
}

func checkOutput(format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("unknown output format %q: use text or json", format)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// fmtTime prints times in the user's zone, to the second, which is what a
// table needs; -o json has the exact value.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

// fmtDuration rounds d to what a reader cares about at its size.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// keyValues prints aligned "key: value" lines, leaving out empty values.
func keyValues(w io.Writer, kv [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, p := range kv {
		if p[1] == "" {
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], p[1])
	}
	return tw.Flush()
}
