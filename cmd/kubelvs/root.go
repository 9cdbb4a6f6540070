package main

import (
	"fmt"
	"strings"

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
	// cobra adds these two when the tree runs; adding them now lets strictArgs cover them too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictArgs(root)
	return root
}

// subcommands is filled by init functions in the files of each subcommand, so that adding a
// subcommand touches only its own file.
var subcommands []func() *cobra.Command

// strictArgs makes every command of the tree refuse arguments it does not know. Left alone,
// cobra prints help and exits 0 for a mistyped subcommand of any group but the root (a group
// has no Run, so cobra never validates its arguments), and a leaf that declares no Args takes
// any: a typo in a script would pass for success. So a group runs only to print its help and
// rejects any argument as an unknown command, a leaf without an Args rule takes none, and help
// refuses topics that do not exist.
func strictArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
	switch {
	case c.Name() == "help" && c.HasParent():
		strictHelp(c)
	case c.HasSubCommands() && !c.Runnable():
		c.Args = unknownCommand
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	case c.Args == nil:
		c.Args = cobra.NoArgs
	}
}

// unknownCommand is the Args rule of a command group: any argument left after cobra looked for
// a subcommand names none of them. The message is cobra's own for the root command.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, which only its unexported path applies
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return fmt.Errorf("%s\nRun '%s --help' for usage", msg, cmd.CommandPath())
}

// strictHelp makes `kubelvs help TOPIC...` fail for a topic that is not a command, where
// cobra's help command prints "Unknown help topic" and succeeds.
func strictHelp(help *cobra.Command) {
	show := help.Run
	help.Run = nil
	help.Args = func(cmd *cobra.Command, args []string) error {
		topic, rest, err := cmd.Root().Find(args)
		if err != nil {
			return err
		}
		return topic.ValidateArgs(rest)
	}
	help.RunE = func(cmd *cobra.Command, args []string) error {
		show(cmd, args)
		return nil
	}
}
