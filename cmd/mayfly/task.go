package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// taskStatuses are the statuses a task can have, in lifecycle order.
var taskStatuses = []string{"queued", "preparing", "running", "complete", "error", "timeout", "killed", "cancelled"}

func newTaskCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Queue, inspect and cancel tasks",
		Long: `A task is one run of a code with a payload, in a fresh container.
Its status goes queued -> preparing -> running and ends complete (exit 0),
error, timeout, killed (stopped by the system) or cancelled (by a user).`,
		Example: `  mayfly task queue hello --payload '{"name":"world"}' --wait
  mayfly task ls --status error --code hello
  mayfly task log 65f1c0ffee0123456789abcd`,
	}
	cmd.AddCommand(
		newTaskQueueCmd(a),
		newTaskLsCmd(a),
		newTaskShowCmd(a),
		newTaskLogCmd(a),
		newTaskCancelCmd(a),
		newTaskRetryCmd(a),
	)
	return cmd
}

type taskQueueCommand struct {
	app         *app
	payload     string
	payloadFile string
	priority    optInt
	delay       seconds
	timeout     seconds
	label       string
	cluster     string
	wait        bool
	poll        time.Duration
}

func newTaskQueueCmd(a *app) *cobra.Command {
	c := &taskQueueCommand{app: a}
	cmd := &cobra.Command{
		Use:   "queue CODE",
		Short: "Queue a task of a code",
		Long: `Queue a task of the code named CODE and print its id. The payload is any
string, usually JSON; the task reads it from the file named by PAYLOAD_FILE.

With --wait, wait for the task to end and print its log; the exit status is
0 only if the task ended complete, else its status and message go to
standard error.`,
		Example: `  mayfly task queue hello --payload '{"name":"world"}'
  mayfly task queue report --payload-file params.json --priority 2 --timeout 10m --label nightly
  echo '{"n":1}' | mayfly task queue hello --payload-file - --wait`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	f := cmd.Flags()
	f.StringVar(&c.payload, "payload", "", "payload string, usually JSON")
	f.StringVar(&c.payloadFile, "payload-file", "", "read the payload from this file, - for standard input")
	f.Var(&c.priority, "priority", "priority 0-2, higher runs first (default: the code's)")
	f.Var(&c.delay, "delay", "run no earlier than this much later, in seconds or as a duration such as 5m")
	f.Var(&c.timeout, "timeout", "stop the task after this long, in seconds or as a duration (default: the server's, 1h)")
	f.StringVar(&c.label, "label", "", "label to find the task by later")
	f.StringVar(&c.cluster, "cluster", "", "run only on runners of this cluster")
	f.BoolVar(&c.wait, "wait", false, "wait for the task to end, print its log, and fail unless it completed")
	f.DurationVar(&c.poll, "poll", time.Second, "how often --wait asks for the task's status")
	cmd.MarkFlagsMutuallyExclusive("payload", "payload-file")
	return cmd
}

func (c *taskQueueCommand) Run(ctx context.Context, args []string) error {
	if p := c.priority.ptr(); p != nil && (*p < 0 || *p > 2) {
		return fmt.Errorf("--priority %d: want 0, 1 or 2", *p)
	}
	payload := c.payload
	if c.payloadFile != "" {
		var b []byte
		var err error
		if c.payloadFile == "-" {
			b, err = io.ReadAll(c.app.stdin)
		} else {
			b, err = os.ReadFile(c.payloadFile)
		}
		if err != nil {
			return fmt.Errorf("read payload: %w", err)
		}
		payload = string(b)
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	ids, err := cl.QueueTasks(ctx, []wire.NewTask{{
		CodeName: args[0],
		Payload:  payload,
		Priority: c.priority.ptr(),
		Timeout:  c.timeout.ptr(),
		Delay:    c.delay.ptr(),
		Cluster:  c.cluster,
		Label:    c.label,
	}})
	if err != nil {
		return err
	}
	taskID := ids[0]
	fmt.Fprintln(c.app.stdout, taskID)
	if !c.wait {
		return nil
	}

	task, err := cl.WaitTask(ctx, taskID, c.poll)
	if err != nil {
		return err
	}
	log, err := cl.TaskLog(ctx, taskID)
	if err != nil && !client.IsNotFound(err) { // no log: the task printed nothing
		return err
	}
	if _, err := c.app.stdout.Write(log); err != nil {
		return err
	}
	if task.Status != "complete" {
		msg := "mayfly: task " + taskID + " ended " + task.Status
		if task.Msg != "" {
			msg += ": " + task.Msg
		}
		fmt.Fprintln(c.app.stderr, msg)
		return &exitError{code: 1}
	}
	return nil
}

type taskLsCommand struct {
	app      *app
	statuses []string
	code     string
	label    string
	page     int
	perPage  int
	output   string
}

func newTaskLsCmd(a *app) *cobra.Command {
	c := &taskLsCommand{app: a}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tasks, newest first",
		Long: `List the project's tasks, newest first, one page at a time (30 by default).
Filters combine: --status may repeat (or take a comma-separated list), and a
task matches any of the statuses given.

Statuses: ` + strings.Join(taskStatuses, ", ") + ".",
		Example: `  mayfly task ls
  mayfly task ls --status error --status timeout --code hello
  mayfly task ls --label nightly --per-page 100 -o json`,
		Args: cobra.NoArgs,
		RunE: runE(c.Run),
	}
	f := cmd.Flags()
	f.StringSliceVar(&c.statuses, "status", nil, "only tasks in this status (repeatable)")
	f.StringVar(&c.code, "code", "", "only tasks of this code name")
	f.StringVar(&c.label, "label", "", "only tasks with this label")
	f.IntVar(&c.page, "page", 0, "page to show, from 0")
	f.IntVar(&c.perPage, "per-page", 0, "tasks per page, at most 100 (default 30)")
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *taskLsCommand) Run(ctx context.Context, _ []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	for _, s := range c.statuses {
		if !slices.Contains(taskStatuses, s) {
			return fmt.Errorf("unknown status %q: want one of %s", s, strings.Join(taskStatuses, ", "))
		}
	}
	if c.page < 0 || c.perPage < 0 || c.perPage > 100 {
		return fmt.Errorf("--page must be 0 or more and --per-page from 1 to 100")
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	tasks, err := cl.ListTasks(ctx, client.TaskFilter{
		CodeName: c.code,
		Label:    c.label,
		Statuses: c.statuses,
		Page:     c.page,
		PerPage:  c.perPage,
	})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, nonNil(tasks))
	}
	now := time.Now()
	tw := newTable(c.app.stdout)
	fmt.Fprintln(tw, "ID\tCODE\tSTATUS\tCREATED\tDURATION")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.CodeName, t.Status, fmtTime(t.CreatedAt), taskDuration(t, now))
	}
	return tw.Flush()
}

// taskDuration is how long a task ran, or has been running so far.
func taskDuration(t wire.Task, now time.Time) string {
	switch {
	case client.Terminal(t.Status) && (t.Duration > 0 || t.StartTime != nil):
		return fmtDuration(time.Duration(t.Duration) * time.Millisecond)
	case t.Status == "running" && t.StartTime != nil:
		return fmtDuration(now.Sub(*t.StartTime)) + "+"
	default:
		return "-"
	}
}

type taskShowCommand struct {
	app    *app
	output string
}

func newTaskShowCmd(a *app) *cobra.Command {
	c := &taskShowCommand{app: a}
	cmd := &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get"},
		Short:   "Show a task",
		Long:    "Show a task's status, timing, retries and payload, as key: value lines or as JSON.",
		Example: `  mayfly task show 65f1c0ffee0123456789abcd
  mayfly task show 65f1c0ffee0123456789abcd -o json | jq .status`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *taskShowCommand) Run(ctx context.Context, args []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	t, err := cl.GetTask(ctx, args[0])
	if err != nil {
		return err
	}
	// A payload that is not text is shown as the server shows it.
	payload := [2]string{"payload", t.Payload}
	if t.PayloadBase64 != "" {
		t.Payload = ""
		payload = [2]string{"payload_base64", t.PayloadBase64}
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, t)
	}
	exit := ""
	if t.ExitCode != nil {
		exit = strconv.Itoa(*t.ExitCode)
	}
	duration := ""
	if t.Duration > 0 {
		duration = fmtDuration(time.Duration(t.Duration) * time.Millisecond)
	}
	return keyValues(c.app.stdout, [][2]string{
		{"id", t.ID},
		{"code_name", t.CodeName},
		{"code_rev", t.CodeRev},
		{"status", t.Status},
		{"msg", t.Msg},
		{"exit_code", exit},
		{"priority", strconv.Itoa(t.Priority)},
		{"timeout", strconv.Itoa(t.Timeout) + "s"},
		{"delay", nonZero(t.Delay, "s")},
		{"cluster", t.Cluster},
		{"label", t.Label},
		{"percent", nonZero(t.Percent, "%")},
		{"duration", duration},
		{"attempt", nonZero(t.Attempt, "")},
		{"retry_count", nonZero(t.RetryCount, "")},
		{"retry_of", t.RetryOf},
		{"retry_at", t.RetryAt},
		{"schedule_id", t.ScheduleID},
		{"runner_id", t.RunnerID},
		{"log_size", nonZero(int(t.LogSize), "")},
		{"created_at", fmtTime(t.CreatedAt)},
		{"start_time", fmtTimePtr(t.StartTime)},
		{"end_time", fmtTimePtr(t.EndTime)},
		payload,
	})
}

func nonZero(n int, unit string) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n) + unit
}

type taskLogCommand struct {
	app    *app
	follow bool
	poll   time.Duration
}

func newTaskLogCmd(a *app) *cobra.Command {
	c := &taskLogCommand{app: a}
	cmd := &cobra.Command{
		Use:     "log ID",
		Aliases: []string{"logs"},
		Short:   "Print the log of a task",
		Long: `Print the log of a task: its standard output and standard error, interleaved
in order. With -f, keep printing what the task writes until it ends.`,
		Example: `  mayfly task log 65f1c0ffee0123456789abcd
  mayfly task logs -f 65f1c0ffee0123456789abcd`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	cmd.Flags().BoolVarP(&c.follow, "follow", "f", false, "keep printing the log until the task ends")
	cmd.Flags().DurationVar(&c.poll, "poll", time.Second, "how often -f asks for more when the server does not stream the log")
	return cmd
}

func (c *taskLogCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	taskID := args[0]
	if !c.follow {
		log, err := cl.TaskLog(ctx, taskID)
		if err != nil {
			return err
		}
		_, err = c.app.stdout.Write(log)
		return err
	}
	if c.poll <= 0 {
		c.poll = time.Second
	}
	// The server streams the log until the task ends.
	tee := &teeBuffer{w: c.app.stdout}
	ferr := cl.FollowLog(ctx, taskID, tee)
	if ferr != nil && (client.IsNotFound(ferr) || ctx.Err() != nil || tee.failed) {
		return ferr
	}
	if t, err := cl.GetTask(ctx, taskID); err == nil && client.Terminal(t.Status) && ferr == nil {
		return nil
	}
	// A server that does not stream (or a cut stream): follow by printing
	// what grew since the last look. The task's status is read before the
	// log, so that the last round, after the task ended, sees the complete
	// log.
	printed := tee.buf
	for {
		t, err := cl.GetTask(ctx, taskID)
		if err != nil {
			return err
		}
		log, err := cl.TaskLog(ctx, taskID)
		if err != nil && !client.IsNotFound(err) {
			return err
		}
		if bytes.HasPrefix(log, printed) {
			if _, err := c.app.stdout.Write(log[len(printed):]); err != nil {
				return err
			}
			printed = log
		} else {
			// The head changed (e.g. the server truncated the log): go on
			// from here rather than print it all again.
			printed = log
		}
		if client.Terminal(t.Status) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(c.poll):
		}
	}
}

type taskCancelCommand struct{ app *app }

func newTaskCancelCmd(a *app) *cobra.Command {
	c := &taskCancelCommand{app: a}
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task",
		Long: `Cancel a task. A queued task ends at once; a running one is stopped (SIGTERM,
then SIGKILL after a grace period) within a few seconds. Either way it ends
cancelled and is not retried.`,
		Example: "  mayfly task cancel 65f1c0ffee0123456789abcd",
		Args:    cobra.ExactArgs(1),
		RunE:    runE(c.Run),
	}
}

func (c *taskCancelCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	if err := cl.CancelTask(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "Cancelled task %s\n", args[0])
	return nil
}

// teeBuffer writes to w and keeps what it wrote.
type teeBuffer struct {
	w      io.Writer
	buf    []byte
	failed bool
}

func (t *teeBuffer) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.buf = append(t.buf, p[:n]...)
	if err != nil {
		t.failed = true
	}
	return n, err
}
