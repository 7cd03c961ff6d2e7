package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type taskRetryCommand struct {
	app   *app
	delay seconds
}

func newTaskRetryCmd(a *app) *cobra.Command {
	c := &taskRetryCommand{app: a}
	cmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Run a finished task again, as a new task",
		Long: `Queue a finished task again as a new task with the same code, payload and
settings, and print the new task's id. The new task's retry_of names the old
one, and the old one's retry_at the new one. A task still queued or running
cannot be retried.`,
		Example: `  mayfly task retry 65f1c0ffee0123456789abcd
  mayfly task retry 65f1c0ffee0123456789abcd --delay 5m`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	cmd.Flags().Var(&c.delay, "delay", "run no earlier than this much later, in seconds or as a duration such as 5m")
	return cmd
}

func (c *taskRetryCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	id, err := cl.RetryTask(ctx, args[0], c.delay.v)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.app.stdout, id)
	return nil
}
