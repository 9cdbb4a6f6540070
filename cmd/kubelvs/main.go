// Command kubelvs is the kubelvs binary: the cluster controller, the node agent and the debugging
// tools for generic netlink, IPVS and taskstats, as subcommands of one program.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kubelvs:", err)
		return 1
	}
	return 0
}
