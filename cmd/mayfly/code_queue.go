package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/client"
)

// codeQueueCommand is one of the commands that act on a code's queue.
type codeQueueCommand struct {
	app *app
	act func(ctx context.Context, cl *client.Client, codeID string) (string, error)
}

func (c *codeQueueCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	code, err := resolveCode(ctx, cl, args[0])
	if err != nil {
		return err
	}
	out, err := c.act(ctx, cl, code.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "%s: %s\n", code.Name, out)
	return nil
}

func newCodeQueueCmds(a *app) []*cobra.Command {
	mk := func(use, short string, act func(ctx context.Context, cl *client.Client, codeID string) (string, error)) *cobra.Command {
		c := &codeQueueCommand{app: a, act: act}
		return &cobra.Command{Use: use + " ID|NAME", Short: short, Args: cobra.ExactArgs(1), RunE: runE(c.Run),
			Example: "  mayfly code " + use + " hello"}
	}
	return []*cobra.Command{
		mk("pause", "Stop handing out the code's tasks (queued ones wait)", func(ctx context.Context, cl *client.Client, id string) (string, error) {
			return "paused", cl.PauseCode(ctx, id)
		}),
		mk("resume", "Hand out the code's tasks again", func(ctx context.Context, cl *client.Client, id string) (string, error) {
			return "resumed", cl.ResumeCode(ctx, id)
		}),
		mk("cancel-all", "Cancel every unfinished task of the code", func(ctx context.Context, cl *client.Client, id string) (string, error) {
			return cl.CancelAll(ctx, id)
		}),
		mk("stats", "Count the code's tasks by status", func(ctx context.Context, cl *client.Client, id string) (string, error) {
			s, err := cl.CodeStats(ctx, id)
			return fmt.Sprintf("queued %d, preparing %d, running %d, complete %d, error %d, timeout %d, killed %d, cancelled %d",
				s.Queued, s.Preparing, s.Running, s.Complete, s.Error, s.Timeout, s.Killed, s.Cancelled), err
		}),
	}
}
