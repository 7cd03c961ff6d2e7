package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/stack"
)

func newStackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stack",
		Short: "Build and list stacks, the base images code runs on",
		Long: `A stack is a named base image (busybox, binary, python-3.11, node-18,
ruby-3.1, php-8.2) that code packages run on; python, node, ruby and php are
aliases of the versioned names. Its recipe is built into the binary and built
locally with the Docker engine, with no registry: busybox from the host's
busybox-static, the others from a Debian system that debootstrap installs
from the host's package mirror (as root). These commands talk to the local
Docker engine, not to the server.`,
	}
	cmd.AddCommand(newStackBuildCmd(), newStackLsCmd())
	return cmd
}

func newStackBuildCmd() *cobra.Command {
	var all, force bool
	cmd := &cobra.Command{
		Use:   "build NAME... | --all",
		Short: "Build stack images (skips those that are current)",
		Long: `Builds stack images, skipping those whose recipe is unchanged since their
last build. A stack with a Debian base makes it first with debootstrap (as
root, packages from the host's apt mirror or $` + "MAYFLY_DEBIAN_MIRROR" + `), unless a base of the
same recipe exists; --force makes the base again too, with fresh packages.`,
		Example: `  mayfly stack build busybox python
  mayfly stack build --all
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
				resolved, ok := stack.Resolve(n)
				if !ok {
					return fmt.Errorf("unknown stack %q (known: %s)", n, strings.Join(stack.Names(), ", "))
				}
				n = resolved
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
		Short: "List stacks, their aliases, and whether their image is built here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := stack.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STACK\tALIASES\tIMAGE\tBUILT\tSIZE")
			for _, s := range list {
				aliases, size := strings.Join(s.Aliases, ","), "-"
				if aliases == "" {
					aliases = "-"
				}
				if s.Built {
					size = fmt.Sprintf("%.1f MB", float64(s.Size)/1e6)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", s.Name, aliases, s.Image, s.Built, size)
			}
			return tw.Flush()
		},
	}
}
