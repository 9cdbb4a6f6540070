// Command agent-bench benchmarks the kubelvs node agent (`make bench-agent`, hack/bench/run-agent.sh):
//
//	agent-bench populate -kubeconfig FILE -server URL [flags]   on the host: create the objects
//	agent-bench run -kubeconfig FILE -kubelvs BIN [flags]         in the VM: run the phases, print the table
//
// The table: N VirtualServices (-vs), each backed by its own Service and an EndpointSlice of
// -dests ready endpoints. The phases (each measured in the guest, by its clock):
//
//  1. one EndpointSlice change to kernel: -changes updates of one slice each (endpoint 0 swapped),
//     timed from just before the API update to the new destination read back from the agent's
//     network namespace (ipvs.Client.Destinations of that service, polled every millisecond);
//     the agent's kubelvs_agent_network_programming_duration_seconds histogram (the slices carry
//     endpoints.kubernetes.io/last-change-trigger-time) is printed beside it. Against -resyncs
//     kube-proxy-style full resyncs with moby/ipvs (hack/bench/kubeproxy) of the same table in
//     another namespace, each after changing one service.
//  2. convergence from an empty kernel (agent start to /readyz, which the agent answers after its
//     first full sync; the table is then checked complete) against pkg/ipvs.Apply of the same table
//     into an empty namespace plus the informers' initial sync (a controller-runtime cache of
//     VirtualServices, Services, EndpointSlices, BackendPools and Nodes, as the agent's).
//  3. restart with the table programmed: ready time and kubelvs_agent_netlink_requests_total{kind="write"}.
//  4. an audit without drift: kubelvs_agent_audit_duration_seconds and the writes, against one
//     ipvs.Client.Table read (the median of three).
//  5. idle: netlink requests over -idle without changes, between audits (the audit period is
//     longer than the window).
//  6. the agent's VmRSS and its utime+stime over the idle window.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	vs, dests, changes, resyncs, workers int
	idle, auditPeriod, changeInterval    time.Duration
	kubeconfig, server, kubelvs          string
	agentFlags                           []string
	profile                              bool
	profileFor                           time.Duration
	trace                                bool
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "populate" && os.Args[1] != "run") {
		fmt.Fprintln(os.Stderr, "usage: agent-bench populate|run [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	var o options
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.IntVar(&o.vs, "vs", 10000, "VirtualServices (each with its own Service and EndpointSlice)")
	fs.IntVar(&o.dests, "dests", 10, "ready endpoints per EndpointSlice")
	fs.IntVar(&o.changes, "changes", 200, "EndpointSlice changes timed (phase 1)")
	fs.IntVar(&o.resyncs, "resyncs", 3, "kube-proxy-style full resyncs timed (phase 1)")
	fs.IntVar(&o.workers, "workers", 32, "concurrent creates (populate)")
	fs.DurationVar(&o.idle, "idle", 60*time.Second, "idle window (phase 5); the restarted agent's audit period is this + 2 min")
	fs.DurationVar(&o.auditPeriod, "audit-period", 0, "the restarted agent's audit period (default -idle + 2 min; at least the window plus two scrapes)")
	fs.DurationVar(&o.changeInterval, "change-interval", 0, "0: each change after the previous one is in the kernel; > 0: one change every interval (open loop)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the API server")
	fs.StringVar(&o.server, "server", "", "populate: override the kubeconfig's server URL (the host's view)")
	fs.StringVar(&o.kubelvs, "kubelvs", "", "run: the kubelvs binary")
	fs.BoolVar(&o.profile, "profile", false, "run: take the agent's CPU profiles of convergence, the changes and the restart and its heap profile after the changes (pprof on 127.0.0.1), printed as @@pprof NAME BASE64 lines (run-agent.sh writes them to BENCH_PROFILE_DIR)")
	fs.DurationVar(&o.profileFor, "profile-for", 40*time.Second, "run: with -profile, the length of the convergence and restart CPU profiles (from the agent's pprof coming up)")
	fs.BoolVar(&o.trace, "trace", false, "run: with -profile and -change-interval, also an execution trace of the agent over the changes (go tool trace; -pprof=sched for where goroutines waited to run)")
	fs.Func("agent-flag", "run: one more flag for `kubelvs agent` (repeatable), e.g. -agent-flag=--vip-interface=", func(v string) error {
		o.agentFlags = append(o.agentFlags, v)
		return nil
	})
	_ = fs.Parse(os.Args[2:])
	if o.vs < 1 || o.vs > 65536 || o.dests < 1 || o.dests >= altSlot || o.changes < 1 || o.resyncs < 1 || o.workers < 1 || o.kubeconfig == "" {
		fmt.Fprintf(os.Stderr, "agent-bench: -kubeconfig is required; -vs 1..65536, -dests 1..%d, -changes, -resyncs, -workers >= 1\n", altSlot-1)
		os.Exit(2)
	}
	var err error
	if mode == "populate" {
		err = populate(&o)
	} else {
		err = run(&o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-bench:", err)
		os.Exit(1)
	}
}
