package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/wire"
)

func newScheduleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedule",
		Aliases: []string{"schedules"},
		Short:   "Run a code's tasks on a schedule",
		Long: `A schedule queues a task of a code at due times: every --run-every seconds,
at the times of a --cron expression (5 fields, in --timezone, UTC by default),
or once (at --start-at, or at once) when neither is given. Each due time makes exactly one
task, whose schedule_id (and SCHEDULE_ID inside the container) names the
schedule. A due time missed while the server was down runs once when it is
back; the next one is counted from then.`,
		Example: `  mayfly schedule create hello --run-every 1h --payload '{"name":"world"}'
  mayfly schedule create report --cron '30 2 * * *' --timezone Europe/Berlin --max-concurrency 1
  mayfly schedule create cleanup --start-at 2026-12-24T18:00:00Z
  mayfly schedule ls
  mayfly schedule cancel 65f1c0ffee0123456789abcd`,
	}
	cmd.AddCommand(
		newScheduleCreateCmd(a),
		newScheduleLsCmd(a),
		newScheduleShowCmd(a),
		newScheduleUpdateCmd(a),
		newScheduleCancelCmd(a),
	)
	return cmd
}

// whenFlag is a point in time: RFC 3339, or a duration from now such as
// 10m, which is what people mean most of the time.
type whenFlag struct {
	t   time.Time
	set bool
	now func() time.Time
}

func (w *whenFlag) String() string {
	if !w.set {
		return ""
	}
	return w.t.Format(time.RFC3339)
}

func (w *whenFlag) Set(v string) error {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		w.t, w.set = t.UTC(), true
		return nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither an RFC 3339 time (2026-12-24T18:00:00Z) nor a duration from now (10m, 2h)", v)
	}
	now := time.Now
	if w.now != nil {
		now = w.now
	}
	w.t, w.set = now().Add(d).UTC().Truncate(time.Second), true
	return nil
}

func (w *whenFlag) Type() string { return "time" }

func (w *whenFlag) ptr() *time.Time {
	if !w.set {
		return nil
	}
	t := w.t
	return &t
}

// scheduleFlags are the settings create and update share.
type scheduleFlags struct {
	name           string
	payload        string
	payloadFile    string
	runEvery       seconds
	cron           string
	timezone       string
	startAt        whenFlag
	endAt          whenFlag
	runTimes       optInt
	priority       optInt
	timeout        seconds
	delay          seconds
	label          string
	cluster        string
	maxConcurrency optInt
}

func (f *scheduleFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.name, "name", "", "a name to tell the schedule by")
	fs.StringVar(&f.payload, "payload", "", "payload of every task, usually JSON")
	fs.StringVar(&f.payloadFile, "payload-file", "", "read the payload from this file, - for standard input")
	fs.Var(&f.runEvery, "run-every", "run every this many seconds, or a duration such as 15m (the server allows 60s and up by default)")
	fs.StringVar(&f.cron, "cron", "", "run at the times of this cron expression, e.g. '30 2 * * *'")
	fs.StringVar(&f.timezone, "timezone", "", "IANA time zone the cron expression is read in, e.g. Europe/Berlin (default UTC)")
	fs.Var(&f.startAt, "start-at", "first run no earlier than this: RFC 3339 or a duration from now such as 10m")
	fs.Var(&f.endAt, "end-at", "no runs after this: RFC 3339 or a duration from now")
	fs.Var(&f.runTimes, "run-times", "stop after this many runs (default: no limit)")
	fs.Var(&f.priority, "priority", "priority 0-2 of the tasks (default: the code's)")
	fs.Var(&f.timeout, "timeout", "stop each task after this long, in seconds or as a duration")
	fs.Var(&f.delay, "delay", "queue each task this much later than its due time")
	fs.StringVar(&f.label, "label", "", "label of the tasks")
	fs.StringVar(&f.cluster, "cluster", "", "run the tasks only on runners of this cluster")
	fs.Var(&f.maxConcurrency, "max-concurrency", "skip a run while this many of the schedule's tasks are unfinished")
	cmd.MarkFlagsMutuallyExclusive("payload", "payload-file")
	cmd.MarkFlagsMutuallyExclusive("run-every", "cron")
}

func (f *scheduleFlags) check() error {
	if p := f.priority.ptr(); p != nil && (*p < 0 || *p > 2) {
		return fmt.Errorf("--priority %d: want 0, 1 or 2", *p)
	}
	if f.timezone != "" {
		if _, err := time.LoadLocation(f.timezone); err != nil || f.timezone == "Local" {
			return fmt.Errorf("--timezone %q: not an IANA time zone such as Europe/Berlin", f.timezone)
		}
	}
	return nil
}

// readPayload returns the payload the flags give, and whether they give one.
func (f *scheduleFlags) readPayload(stdin io.Reader) (string, bool, error) {
	switch {
	case f.payloadFile == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return "", false, fmt.Errorf("read payload: %w", err)
		}
		return string(b), true, nil
	case f.payloadFile != "":
		b, err := os.ReadFile(f.payloadFile)
		if err != nil {
			return "", false, fmt.Errorf("read payload: %w", err)
		}
		return string(b), true, nil
	}
	return f.payload, false, nil
}

type scheduleCreateCommand struct {
	app *app
	f   scheduleFlags
}

func newScheduleCreateCmd(a *app) *cobra.Command {
	c := &scheduleCreateCommand{app: a}
	cmd := &cobra.Command{
		Use:   "create CODE",
		Short: "Create a schedule for a code and print its id",
		Long: `Create a schedule that queues tasks of the code named CODE. Give --run-every
(an interval), --cron (calendar times, with --timezone), or neither for a
single run, at --start-at or at once. Without --start-at an interval
schedule runs at once and a cron schedule at its next time.`,
		Example: `  mayfly schedule create hello --run-every 1h --payload '{"name":"world"}'
  mayfly schedule create hello --run-every 5m --start-at 10m --run-times 3
  mayfly schedule create report --cron '30 2 * * 1-5' --timezone Europe/Berlin --max-concurrency 1
  mayfly schedule create cleanup --start-at 2026-12-24T18:00:00Z --payload-file params.json`,
		Args:              cobra.ExactArgs(1),
		RunE:              runE(c.Run),
		ValidArgsFunction: completeCodeNames(a),
	}
	c.f.register(cmd)
	return cmd
}

func (c *scheduleCreateCommand) Run(ctx context.Context, args []string) error {
	if err := c.f.check(); err != nil {
		return err
	}
	payload, _, err := c.f.readPayload(c.app.stdin)
	if err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	ids, err := cl.CreateSchedules(ctx, []wire.NewSchedule{{
		CodeName:       args[0],
		Name:           c.f.name,
		Payload:        payload,
		StartAt:        c.f.startAt.ptr(),
		EndAt:          c.f.endAt.ptr(),
		RunEvery:       c.f.runEvery.ptr(),
		RunTimes:       c.f.runTimes.ptr(),
		Priority:       c.f.priority.ptr(),
		Timeout:        c.f.timeout.ptr(),
		Delay:          c.f.delay.ptr(),
		Cluster:        c.f.cluster,
		Label:          c.f.label,
		MaxConcurrency: c.f.maxConcurrency.ptr(),
		Cron:           c.f.cron,
		Timezone:       c.f.timezone,
	}})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.app.stdout, ids[0])
	return nil
}

type scheduleLsCommand struct {
	app     *app
	page    int
	perPage int
	output  string
}

func newScheduleLsCmd(a *app) *cobra.Command {
	c := &scheduleLsCommand{app: a}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List schedules, newest first",
		Example: `  mayfly schedule ls
  mayfly schedule ls -o json`,
		Args: cobra.NoArgs,
		RunE: runE(c.Run),
	}
	cmd.Flags().IntVar(&c.page, "page", 0, "page to show, from 0")
	cmd.Flags().IntVar(&c.perPage, "per-page", 0, "schedules per page, at most 100 (default 30)")
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *scheduleLsCommand) Run(ctx context.Context, _ []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	if c.page < 0 || c.perPage < 0 || c.perPage > 100 {
		return fmt.Errorf("--page must be 0 or more and --per-page from 1 to 100")
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	scs, err := cl.ListSchedules(ctx, c.page, c.perPage)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, nonNil(scs))
	}
	tw := newTable(c.app.stdout)
	fmt.Fprintln(tw, "ID\tCODE\tSTATUS\tWHEN\tRUNS\tNEXT\tNAME")
	for _, s := range scs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.CodeName, s.Status, scheduleRule(s), scheduleRuns(s),
			fmtTimePtr(s.NextStart), s.Name)
	}
	return tw.Flush()
}

// scheduleRule says when a schedule runs, in a few words.
func scheduleRule(s wire.Schedule) string {
	switch {
	case s.Cron != "" && s.Timezone != "":
		return "cron " + s.Cron + " " + s.Timezone
	case s.Cron != "":
		return "cron " + s.Cron
	case s.RunEvery > 0:
		return "every " + fmtDuration(time.Duration(s.RunEvery)*time.Second)
	case s.StartAt != nil:
		return "once"
	}
	return "-"
}

func scheduleRuns(s wire.Schedule) string {
	if s.RunTimes > 0 {
		return strconv.Itoa(s.RunCount) + "/" + strconv.Itoa(s.RunTimes)
	}
	return strconv.Itoa(s.RunCount)
}

type scheduleShowCommand struct {
	app    *app
	output string
}

func newScheduleShowCmd(a *app) *cobra.Command {
	c := &scheduleShowCommand{app: a}
	cmd := &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get"},
		Short:   "Show a schedule",
		Example: `  mayfly schedule show 65f1c0ffee0123456789abcd
  mayfly schedule show 65f1c0ffee0123456789abcd -o json | jq .next_start`,
		Args:              cobra.ExactArgs(1),
		RunE:              runE(c.Run),
		ValidArgsFunction: completeScheduleIDs(a),
	}
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *scheduleShowCommand) Run(ctx context.Context, args []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	s, err := cl.GetSchedule(ctx, args[0])
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, s)
	}
	prio := ""
	if s.Priority != nil {
		prio = strconv.Itoa(*s.Priority)
	}
	opt := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return fmtTime(*t)
	}
	return keyValues(c.app.stdout, [][2]string{
		{"id", s.ID},
		{"name", s.Name},
		{"code_name", s.CodeName},
		{"status", s.Status},
		{"msg", s.Msg},
		{"when", scheduleRule(s)},
		{"start_at", opt(s.StartAt)},
		{"end_at", opt(s.EndAt)},
		{"run_count", scheduleRuns(s)},
		{"last_run_time", opt(s.LastRunTime)},
		{"next_start", opt(s.NextStart)},
		{"priority", prio},
		{"timeout", nonZero(s.Timeout, "s")},
		{"delay", nonZero(s.Delay, "s")},
		{"cluster", s.Cluster},
		{"label", s.Label},
		{"max_concurrency", nonZero(s.MaxConcurrency, "")},
		{"created_at", fmtTime(s.CreatedAt)},
		{"updated_at", fmtTime(s.UpdatedAt)},
		{"payload", s.Payload},
	})
}

type scheduleUpdateCommand struct {
	app *app
	f   scheduleFlags
	cmd *cobra.Command
}

func newScheduleUpdateCmd(a *app) *cobra.Command {
	c := &scheduleUpdateCommand{app: a}
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a schedule",
		Long: `Change the settings of a schedule that the flags name; the others stay.
--run-every replaces a cron expression and --cron an interval; a new
--start-at, --run-every, --cron or --timezone moves the next run.`,
		Example: `  mayfly schedule update 65f1c0ffee0123456789abcd --payload '{"name":"moon"}'
  mayfly schedule update 65f1c0ffee0123456789abcd --cron '0 6 * * *' --timezone America/New_York`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeScheduleIDs(a),
	}
	cmd.RunE = runE(c.Run)
	c.cmd = cmd
	c.f.register(cmd)
	return cmd
}

func (c *scheduleUpdateCommand) Run(ctx context.Context, args []string) error {
	if err := c.f.check(); err != nil {
		return err
	}
	changed := c.cmd.Flags().Changed
	str := func(flag, v string) *string {
		if !changed(flag) {
			return nil
		}
		return &v
	}
	upd := wire.ScheduleUpdate{
		Name:           str("name", c.f.name),
		Payload:        str("payload", c.f.payload),
		StartAt:        c.f.startAt.ptr(),
		EndAt:          c.f.endAt.ptr(),
		RunEvery:       c.f.runEvery.ptr(),
		RunTimes:       c.f.runTimes.ptr(),
		Priority:       c.f.priority.ptr(),
		Timeout:        c.f.timeout.ptr(),
		Delay:          c.f.delay.ptr(),
		Cluster:        str("cluster", c.f.cluster),
		Label:          str("label", c.f.label),
		MaxConcurrency: c.f.maxConcurrency.ptr(),
		Cron:           str("cron", c.f.cron),
		Timezone:       str("timezone", c.f.timezone),
	}
	if payload, ok, err := c.f.readPayload(c.app.stdin); err != nil {
		return err
	} else if ok {
		upd.Payload = &payload
	}
	if c.cmd.Flags().NFlag() == 0 {
		return errors.New("nothing to change: give the flags of the settings to change")
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	if err := cl.UpdateSchedule(ctx, args[0], upd); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "Updated schedule %s\n", args[0])
	return nil
}

type scheduleCancelCommand struct{ app *app }

func newScheduleCancelCmd(a *app) *cobra.Command {
	c := &scheduleCancelCommand{app: a}
	return &cobra.Command{
		Use:               "cancel ID",
		Short:             "Cancel a schedule",
		Long:              "Cancel a schedule: it makes no more tasks. Tasks it made already run on; cancel them with mayfly task cancel.",
		Example:           "  mayfly schedule cancel 65f1c0ffee0123456789abcd",
		Args:              cobra.ExactArgs(1),
		RunE:              runE(c.Run),
		ValidArgsFunction: completeScheduleIDs(a),
	}
}

func (c *scheduleCancelCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	if err := cl.CancelSchedule(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "Cancelled schedule %s\n", args[0])
	return nil
}

// Shell completion of arguments asks the server, briefly; with no server
// it offers nothing rather than hang the shell.

const completeTimeout = 2 * time.Second

func completeCodeNames(a *app) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
		defer cancel()
		codes, err := cl.ListCodes(ctx, 0, 100)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, c := range codes {
			names = append(names, c.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeScheduleIDs(a *app) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
		defer cancel()
		scs, err := cl.ListSchedules(ctx, 0, 100)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, s := range scs {
			desc := s.CodeName + " " + s.Status + " " + scheduleRule(s)
			out = append(out, s.ID+"\t"+desc)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
