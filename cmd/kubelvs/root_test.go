package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// takesArgs are the commands of the tree that take positional arguments; every other command
// must refuse any.
var takesArgs = map[string]bool{"kubelvs taskstats": true}

// TestUnknownCommandsFail walks the real command tree: a mistyped subcommand of every group,
// and an argument given to every command that takes none, fail with cobra's "unknown command"
// message, where they printed help and succeeded.
func TestUnknownCommandsFail(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || strings.HasPrefix(c.Name(), "__") || c.Name() == "help" { // help: below
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCommand(), nil)
	groups := 0
	for _, path := range paths {
		name := strings.Join(append([]string{"kubelvs"}, path...), " ")
		if takesArgs[name] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			args := append(append([]string(nil), path...), "bogus")
			_, err := runKubelvs(t, args...)
			want := `unknown command "bogus" for "` + name + `"`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("kubelvs %s: err = %v, want one containing %s", strings.Join(args, " "), err, want)
			}
		})
		if c, _, _ := newRootCommand().Find(path); c.HasSubCommands() {
			groups++
		}
	}
	if groups < 3 { // the root, genl, ipvs (and cobra's completion)
		t.Errorf("walked %d command groups, want at least 3: is the tree built?", groups)
	}
	// help names the commands: an unknown topic fails too.
	for _, args := range [][]string{{"help", "bogus"}, {"help", "ipvs", "bogus"}} {
		if _, err := runKubelvs(t, args...); err == nil || !strings.Contains(err.Error(), `unknown command "bogus"`) {
			t.Errorf("kubelvs %s: err = %v, want unknown command", strings.Join(args, " "), err)
		}
	}
}

// TestKnownCommandsStillWork: the strictness must not break what worked: a group alone prints
// its help, help on a group too, and a suggestion is offered for a near miss.
func TestKnownCommandsStillWork(t *testing.T) {
	for _, args := range [][]string{{}, {"ipvs"}, {"genl"}, {"help", "ipvs"}, {"ipvs", "--help"}, {"ipvs", "list", "--help"}} {
		out, err := runKubelvs(t, args...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("kubelvs %s: err = %v, output %q, want help", strings.Join(args, " "), err, out)
		}
	}
	_, err := runKubelvs(t, "ipvs", "lst")
	if err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\tlist") {
		t.Errorf("kubelvs ipvs lst: err = %v, want a suggestion of list", err)
	}
}
