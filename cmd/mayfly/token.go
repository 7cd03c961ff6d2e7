package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/wire"
)

func newTokenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (admin)",
		Long: `Tokens are of three kinds: admin (every project, and tokens and runners),
project (the IronWorker OAuth token of one project) and runner (lease and
report tasks only, for the clusters it names). A new token's secret is
printed once; the server keeps only a keyed digest of it. A revoked token
fails at once on every server. These commands need an admin token.`,
	}
	cmd.AddCommand(newTokenCreateCmd(a), newTokenLsCmd(a), newTokenRevokeCmd(a))
	return cmd
}

type tokenCreateCommand struct {
	app      *app
	name     string
	runner   bool
	admin    bool
	quiet    bool
	clusters []string
	expires  string
}

func newTokenCreateCmd(a *app) *cobra.Command {
	c := &tokenCreateCommand{app: a}
	cmd := &cobra.Command{
		Use:   "create --name NAME [--runner [--cluster C ...] | --admin | --project ID] [--expires 720h]",
		Short: "Create a token and print its secret (shown once)",
		Long: `Create a token. Without --runner or --admin it is a project token of the
project the CLI is configured for (--project, MAYFLY_PROJECT, ...).`,
		Example: `  mayfly token create --runner --name gpu-box-1 --cluster gpu
  mayfly token create --project 5f0000000000000000000001 --name ci
  export MAYFLY_RUNNER_TOKEN=$(mayfly token create --runner --name box-2 -q)`,
		Args: cobra.NoArgs,
		RunE: runE(c.Run),
	}
	f := cmd.Flags()
	f.StringVar(&c.name, "name", "", "what the token is for (required)")
	f.BoolVar(&c.runner, "runner", false, "a runner token: lease and report tasks only")
	f.BoolVar(&c.admin, "admin", false, "an admin token")
	f.StringSliceVar(&c.clusters, "cluster", nil, "with --runner: a cluster it may serve (repeat; none = any; \"default\" is the default cluster)")
	f.BoolVarP(&c.quiet, "quiet", "q", false, "print the secret alone")
	f.StringVar(&c.expires, "expires", "", "when the token stops working: a duration from now (720h) or an RFC 3339 time; default never")
	cmd.MarkFlagsMutuallyExclusive("runner", "admin")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func (c *tokenCreateCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.adminClient()
	if err != nil {
		return err
	}
	req := wire.NewToken{Name: c.name, Clusters: c.clusters}
	if c.expires != "" {
		at, err := parseExpiry(c.expires, time.Now())
		if err != nil {
			return err
		}
		req.ExpiresAt = &at
	}
	switch {
	case c.runner:
		req.Kind = "runner"
	case c.admin:
		req.Kind = "admin"
	default:
		cfg, err := c.app.config()
		if err != nil {
			return err
		}
		if cfg.ProjectID == "" {
			return fmt.Errorf("name the kind: --runner, --admin, or a project token of --project ID")
		}
		req.Kind, req.ProjectID = "project", cfg.ProjectID
	}
	tok, err := cl.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	if c.quiet {
		fmt.Fprintln(c.app.stdout, tok.Secret)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "Created %s token %s (%s). Its secret, shown this once:\n%s\n", tok.Kind, tok.ID, tok.Name, tok.Secret)
	return nil
}

type tokenLsCommand struct {
	app *app
	all bool
}

func newTokenLsCmd(a *app) *cobra.Command {
	c := &tokenLsCommand{app: a}
	cmd := &cobra.Command{
		Use:   "ls [--all]",
		Short: "List the project's tokens, or all with --all (never their secrets)",
		Args:  cobra.NoArgs,
		RunE:  runE(c.Run),
	}
	cmd.Flags().BoolVar(&c.all, "all", false, "every token: admin and runner tokens, and every project's")
	return cmd
}

func (c *tokenLsCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.adminClient()
	if err != nil {
		return err
	}
	project := ""
	if !c.all {
		cfg, err := c.app.config()
		if err != nil {
			return err
		}
		if project = cfg.ProjectID; project == "" {
			return fmt.Errorf("no project: use --project, MAYFLY_PROJECT, or --all for every token")
		}
	}
	toks, err := cl.Tokens(ctx, project)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.app.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tNAME\tPROJECT\tCLUSTERS\tCREATED\tEXPIRES")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Name, dash(t.ProjectID), clusterList(t.Clusters),
			fmtTime(t.CreatedAt), fmtTimePtr(t.ExpiresAt))
	}
	return tw.Flush()
}

func newTokenRevokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke tokens: they fail at once, on every server",
		Args:  cobra.MinimumNArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := cl.RevokeToken(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "Revoked token %s\n", id)
			}
			return nil
		}),
	}
}

// parseExpiry reads --expires: a duration from now, or an RFC 3339 time.
func parseExpiry(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--expires %q: the duration must be positive", v)
		}
		return now.Add(d).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q: give a duration (720h) or an RFC 3339 time (2030-01-02T15:04:05Z)", v)
	}
	return t.UTC(), nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clusterList shows clusters with the default cluster by name; none is any.
func clusterList(cs []string) string {
	if len(cs) == 0 {
		return "any"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c
		if c == "" {
			out[i] = "default"
		}
	}
	return strings.Join(out, ",")
}
