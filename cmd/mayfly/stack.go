package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/stack"
)

func newStackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stack",
		Short: "Build and list stacks, the base images code runs on",
		Long: `A stack is a named base image (busybox, ...) that code packages run on.
Its recipe is built into the binary and built locally with the Docker engine,
from files of Debian packages, with no registry. These commands talk to the
local Docker engine, not to the server.`,
	}
	cmd.AddCommand(newStackBuildCmd(), newStackLsCmd())
	return cmd
}

func newStackBuildCmd() *cobra.Command {
	var all, force bool
	cmd := &cobra.Command{
		Use:   "build NAME... | --all",
		Short: "Build stack images (skips those that are current)",
		Example: `  mayfly stack build busybox
  mayfly stack build --all --force`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := args
			if all {
				names = stack.Names()
			}
			if len(names) == 0 {
				return fmt.Errorf("name a stack (known: %s) or give --all", strings.Join(stack.Names(), ", "))
			}
			out := cmd.OutOrStdout()
			for _, n := range names {
				if !slices.Contains(stack.Names(), n) {
					return fmt.Errorf("unknown stack %q (known: %s)", n, strings.Join(stack.Names(), ", "))
				}
				fmt.Fprintf(out, "stack %s: checking\n", n)
				image, built, err := stack.Build(cmd.Context(), n, out, force)
				if err != nil {
					return err
				}
				if built {
					fmt.Fprintf(out, "stack %s: built %s\n", n, image)
				} else {
					fmt.Fprintf(out, "stack %s: %s is current\n", n, image)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "build every stack")
	cmd.Flags().BoolVar(&force, "force", false, "build again even when current, without the build cache")
	return cmd
}

func newStackLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List stacks and whether their image is built here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			installed, err := stack.Installed(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STACK\tIMAGE\tBUILT")
			for _, n := range stack.Names() {
				fmt.Fprintf(tw, "%s\t%s\t%v\n", n, stack.Image(n), slices.Contains(installed, n))
			}
			return tw.Flush()
		},
	}
}
