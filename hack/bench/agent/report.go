package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func bound(v float64) string {
	if math.IsInf(v, 1) {
		return "> max bucket"
	}
	return "≤ " + secs(time.Duration(v*float64(time.Second)))
}

// report formats the results as a markdown table with a verdict per target.
func report(o *options, r *results) string {
	p50, p99 := percentile(r.changes, 50), percentile(r.changes, 99)
	rp50, rp99 := percentile(r.resyncs, 50), percentile(r.resyncs, 99)
	ref := r.apply + r.informers
	readyRef := r.tableRead + time.Second
	rows := [][]string{
		{fmt.Sprintf("one EndpointSlice change to kernel, p50 (%d changes; %d full resyncs)", len(r.changes), len(r.resyncs)),
			secs(p50), "full resync (moby/ipvs) " + secs(rp50), ratio(rp50, p50) + " faster", "", ""},
		{"one EndpointSlice change to kernel, p99", secs(p99), "full resync " + secs(rp99), ratio(rp99, p99) + " faster",
			"p99 < 50 ms; ≥ 100× faster", verdict(p99 < 50*time.Millisecond && p99 > 0 && rp99 >= 100*p99)},
		{"  of which: the API update's response in the guest", "p50 " + secs(percentile(r.acked, 50)) + ", p99 " + secs(percentile(r.acked, 99)), "", "", "", ""},
		{"  of which: a bare watch in the guest sees the change (the floor of any agent here)",
			"p50 " + secs(percentile(r.seen, 50)) + ", p99 " + secs(percentile(r.seen, 99)), "", "", "", ""},
		{fmt.Sprintf("  the agent's %s (%.0f observations, bucket bounds)", mLatency, r.histN),
			"p50 " + bound(r.histP50) + ", p99 " + bound(r.histP99), "", "", "", ""},
		{fmt.Sprintf("  the agent's %s (%.0f syncs, bucket bounds)", mSync, r.syncN),
			"p50 " + bound(r.syncP50) + ", p99 " + bound(r.syncP99), "", "", "", ""},
		{"convergence from an empty kernel (start to ready, table complete)", secs(r.converge),
			fmt.Sprintf("pkg/ipvs.Apply %s + informers' initial sync %s = %s", secs(r.apply), secs(r.informers), secs(ref)),
			ratio(r.converge, ref), "≤ 1.5×", verdict(r.converge <= ref*3/2)},
		{"restart with the table programmed: writes; ready", fmt.Sprintf("%.0f writes; %s", r.restartWrites, secs(r.restartReady)),
			"one Table read + 1 s = " + secs(readyRef), ratio(r.restartReady, readyRef), "0 writes; ≤ 1×",
			verdict(r.restartWrites == 0 && r.restartReady <= readyRef)},
		{"an audit without drift: writes; time", fmt.Sprintf("%.0f writes; %s", r.auditWrites, secs(r.auditTime)),
			"one Table read " + secs(r.tableRead), ratio(r.auditTime, r.tableRead), "0 writes; ≤ 1.2×",
			verdict(r.auditWrites == 0 && r.auditTime <= r.tableRead*6/5)},
		{fmt.Sprintf("idle: netlink requests over %s (audit period %s)", r.idleWindow.Round(time.Second), r.auditPeriod),
			fmt.Sprintf("%.0f", r.idleRequests), "", "", "0", verdict(r.idleRequests == 0)},
		{"resident memory (VmRSS): converged + changes; restarted; after the audit and 4 scrapes",
			mib(r.rssConverged) + "; " + mib(r.rssRestarted) + "; " + mib(r.rssAfterScrapesBytes), "", "", "< 200 MiB",
			verdict(max(r.rssConverged, r.rssRestarted, r.rssAfterScrapesBytes) < 200<<20)},
		{"CPU while idle (utime+stime over the window)",
			fmt.Sprintf("%s (%.2f%%)", secs(r.idleCPU), 100*r.idleCPU.Seconds()/max(r.idleWindow.Seconds(), 1e-9)), "", "", "", ""},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nagent-bench: %d VirtualServices × %d endpoints (%d services, %d destinations); one full resync made %d service gets, %d dumps, %d writes\n\n",
		o.vs, o.dests, o.vs, o.vs*o.dests, r.resyncCounts.Gets, r.resyncCounts.Dumps, r.resyncCounts.Writes)
	mode := "each after the previous one was in the kernel"
	if o.changeInterval > 0 {
		mode = "one every " + o.changeInterval.String() + " (open loop)"
	}
	fmt.Fprintf(&b, "changes: %s, timed from just before the API update to the destination read back from the agent's netns\n\n", mode)
	b.WriteString(markdown([]string{"measure", "kubelvs agent", "reference", "ratio", "target", "result"}, rows))
	return b.String()
}
