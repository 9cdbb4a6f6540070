package main

import (
	"github.com/spf13/cobra"
)

// newRootCommand builds the kubelvs command tree. Each subcommand lives in its own file and
// registers itself here.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "kubelvs",
		Short:         "Kubernetes load balancing on the kernel's IPVS",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands is filled by init functions in the files of each subcommand, so that adding a
// subcommand touches only its own file.
var subcommands []func() *cobra.Command
