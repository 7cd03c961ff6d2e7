package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newRunnerLsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the live runners: clusters, capacity, busy slots, version, last heartbeat (admin)",
		Long: `List the runners the server heard from in the last 2 minutes, embedded and
remote: their host, the clusters they serve ("default" is the default
cluster), capacity and busy slots, version, driver, stacks and when they were
last heard from. Needs an admin token.`,
		Args: cobra.NoArgs,
		RunE: runE(func(ctx context.Context, args []string) error {
			cl, err := a.adminClient()
			if err != nil {
				return err
			}
			rs, err := cl.Runners(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOST\tCLUSTERS\tBUSY\tVERSION\tDRIVER\tSTACKS\tLAST SEEN")
			now := time.Now()
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s ago\n", r.ID, dash(r.Host), clusterList(r.Clusters),
					r.Busy, r.Capacity, dash(r.Version), dash(r.Driver), dash(strings.Join(r.Stacks, ",")),
					now.Sub(r.LastSeen).Round(time.Second))
			}
			return tw.Flush()
		}),
	}
}
