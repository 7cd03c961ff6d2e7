package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mayfly-run/mayfly/internal/wire"
)

func newProjectCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Create, list, change and delete projects (admin)",
		Long: `A project owns codes, tasks and schedules, and has tokens of its own; nothing
crosses projects. Its quotas bound what it may hold and do: 0 takes the
server's default (mayfly server --quota-*), -1 means no limit. These
commands need an admin token.`,
	}
	cmd.AddCommand(newProjectCreateCmd(a), newProjectLsCmd(a), newProjectShowCmd(a), newProjectUpdateCmd(a), newProjectRmCmd(a))
	return cmd
}

// quotaFlags are the quota settings of project create and update.
type quotaFlags struct {
	queued, running, schedules, codeBytes int64
	rate                                  float64
}

func (q *quotaFlags) register(f *pflag.FlagSet) {
	f.Int64Var(&q.queued, "queued-tasks", 0, "quota: tasks queued at once (0 = server default, -1 = no limit)")
	f.Int64Var(&q.running, "running-tasks", 0, "quota: tasks running at once across every runner (0 = server default, -1 = no limit)")
	f.Int64Var(&q.schedules, "schedules", 0, "quota: schedules (0 = server default, -1 = no limit)")
	f.Int64Var(&q.codeBytes, "code-bytes", 0, "quota: bytes of code packages (0 = server default, -1 = no limit)")
	f.Float64Var(&q.rate, "request-rate", 0, "quota: API requests a second per token (0 = server default, -1 = no limit)")
}

// change returns the quotas whose flags were given.
func (q *quotaFlags) change(f *pflag.FlagSet) *wire.QuotaChange {
	var c wire.QuotaChange
	changed := false
	set := func(name string, v int64, to **int64) {
		if f.Changed(name) {
			*to, changed = &v, true
		}
	}
	set("queued-tasks", q.queued, &c.QueuedTasks)
	set("running-tasks", q.running, &c.RunningTasks)
	set("schedules", q.schedules, &c.Schedules)
	set("code-bytes", q.codeBytes, &c.CodeBytes)
	if f.Changed("request-rate") {
		r := q.rate
		c.RequestRate, changed = &r, true
	}
	if !changed {
		return nil
	}
	return &c
}

func newProjectCreateCmd(a *app) *cobra.Command {
	var (
		name  string
		q     quotaFlags
		quiet bool
	)
	cmd := &cobra.Command{
		Use:     "create --name NAME [--queued-tasks N] [--running-tasks N] ...",
		Short:   "Create a project and print its id",
		Example: `  mayfly project create --name team-a --running-tasks 20`,
		Args:    cobra.NoArgs,
	}
	cmd.RunE = runE(func(ctx context.Context, args []string) error {
		cl, err := a.adminClient()
		if err != nil {
			return err
		}
		p, err := cl.CreateProject(ctx, wire.ProjectChange{Name: &name, Quotas: q.change(cmd.Flags())})
		if err != nil {
			return err
		}
		if quiet {
			fmt.Fprintln(a.stdout, p.ID)
			return nil
		}
		fmt.Fprintf(a.stdout, "Created project %s (%s)\n", p.ID, p.Name)
		return nil
	})
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the project's name (required)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print the id alone")
	q.register(f)
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newProjectLsCmd(a *app) *cobra.Command {
	var page, perPage int
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List projects, oldest first",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			ps, err := cl.Projects(ctx, page, perPage)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tQUEUED\tRUNNING\tSCHEDULES\tCODE BYTES\tRATE\tCREATED")
			for _, p := range ps {
				l := limitsOf(p)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Name, limit(l.QueuedTasks), limit(l.RunningTasks),
					limit(l.Schedules), limit(l.CodeBytes), rateLimit(l.RequestRate), fmtTime(p.CreatedAt))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().IntVar(&page, "page", 0, "page, from 0")
	cmd.Flags().IntVar(&perPage, "per-page", 100, "projects per page (at most 100)")
	return cmd
}

func limitsOf(p wire.Project) wire.Quotas {
	if p.Limits == nil {
		return wire.Quotas{}
	}
	return *p.Limits
}

func limit(v int64) string {
	if v <= 0 {
		return "none"
	}
	return strconv.FormatInt(v, 10)
}

func rateLimit(v float64) string {
	if v <= 0 {
		return "none"
	}
	return strconv.FormatFloat(v, 'g', -1, 64) + "/s"
}

// quotaSetting shows a project's own quota setting.
func quotaSetting(v int64) string {
	switch {
	case v == 0:
		return "server default"
	case v < 0:
		return "no limit"
	}
	return strconv.FormatInt(v, 10)
}

func newProjectShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a project and its quotas",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			p, err := cl.GetProject(ctx, args[0])
			if err != nil {
				return err
			}
			var own wire.Quotas
			if p.Quotas != nil {
				own = *p.Quotas
			}
			l := limitsOf(p)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "id\t%s\nname\t%s\ncreated\t%s\nupdated\t%s\n", p.ID, p.Name, fmtTime(p.CreatedAt), fmtTime(p.UpdatedAt))
			fmt.Fprintln(tw, "QUOTA\tSETTING\tLIMIT")
			fmt.Fprintf(tw, "queued tasks\t%s\t%s\n", quotaSetting(own.QueuedTasks), limit(l.QueuedTasks))
			fmt.Fprintf(tw, "running tasks\t%s\t%s\n", quotaSetting(own.RunningTasks), limit(l.RunningTasks))
			fmt.Fprintf(tw, "schedules\t%s\t%s\n", quotaSetting(own.Schedules), limit(l.Schedules))
			fmt.Fprintf(tw, "code bytes\t%s\t%s\n", quotaSetting(own.CodeBytes), limit(l.CodeBytes))
			rate := "server default"
			switch {
			case own.RequestRate < 0:
				rate = "no limit"
			case own.RequestRate > 0:
				rate = rateLimit(own.RequestRate)
			}
			fmt.Fprintf(tw, "request rate\t%s\t%s\n", rate, rateLimit(l.RequestRate))
			return tw.Flush()
		}),
	}
}

func newProjectUpdateCmd(a *app) *cobra.Command {
	var (
		name string
		q    quotaFlags
	)
	cmd := &cobra.Command{
		Use:     "update ID [--name NAME] [--queued-tasks N] [--running-tasks N] ...",
		Short:   "Rename a project or change its quotas",
		Example: `  mayfly project update 5f0000000000000000000001 --running-tasks 50 --request-rate -1`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = runE(func(ctx context.Context, args []string) error {
		cl, err := a.adminClient()
		if err != nil {
			return err
		}
		var c wire.ProjectChange
		if cmd.Flags().Changed("name") {
			c.Name = &name
		}
		c.Quotas = q.change(cmd.Flags())
		if c.Name == nil && c.Quotas == nil {
			return fmt.Errorf("nothing to change: give --name or a quota flag")
		}
		p, err := cl.UpdateProject(ctx, args[0], c)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Updated project %s (%s)\n", p.ID, p.Name)
		return nil
	})
	cmd.Flags().StringVar(&name, "name", "", "new name")
	q.register(cmd.Flags())
	return cmd
}

func newProjectRmCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm ID... [--force]",
		Short: "Delete projects with their codes, tasks, schedules and tokens",
		Long: `Delete projects with everything they hold. A project with tasks queued or
running is refused unless --force, which cancels them.`,
		Args: cobra.MinimumNArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := cl.DeleteProject(ctx, id, force); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "Deleted project %s\n", id)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "cancel the project's queued and running tasks")
	return cmd
}

func newAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Who changed what: the audit record",
	}
	var (
		page, perPage int
		all           bool
	)
	ls := &cobra.Command{
		Use:   "ls [--all]",
		Short: "List audit records of the project, newest first (--all: every project's, with an admin token)",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			project := ""
			if !all {
				cfg, err := a.config()
				if err != nil {
					return err
				}
				project = cfg.ProjectID
			}
			es, err := cl.Audit(ctx, project, page, perPage)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTOKEN\tTOKEN ID\tACTION\tTARGET\tPROJECT\tDETAIL")
			for _, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.CreatedAt.Local().Format(time.DateTime), e.TokenName,
					dash(e.TokenID), e.Action, e.Target, dash(e.ProjectID), e.Detail)
			}
			return tw.Flush()
		}),
	}
	ls.Flags().IntVar(&page, "page", 0, "page, from 0")
	ls.Flags().IntVar(&perPage, "per-page", 30, "records per page (at most 100)")
	ls.Flags().BoolVar(&all, "all", false, "every project's records and those outside projects (admin)")
	cmd.AddCommand(ls)
	return cmd
}
