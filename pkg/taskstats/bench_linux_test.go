package taskstats

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
)

// startSleepers starts n idle processes for the sampling benchmark and stops them when b ends.
func startSleepers(b *testing.B, n int) []int {
	b.Helper()
	pids := make([]int, 0, n)
	cmds := make([]*exec.Cmd, 0, n)
	b.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGKILL)
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	})
	for range n {
		c := exec.Command("sleep", "3600")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	return pids
}

// BenchmarkSample1000Processes samples 1,000 live processes side by side: through taskstats (the
// TGID reply alone, and the composed process record that also carries the I/O counters and
// high-water marks) and through the /proc files that hold the same numbers (stat, io, schedstat,
// status). One op samples all 1,000; ns/process is the cost per process.
func BenchmarkSample1000Processes(b *testing.B) {
	c := kernelClient(b)
	const n = 1000
	pids := startSleepers(b, n)
	ctx := context.Background()
	perProcess := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/process")
	}
	b.Run("taskstats-TGID", func(b *testing.B) {
		b.ReportAllocs()
		var s Stats
		for b.Loop() {
			for _, pid := range pids {
				if err := c.ThreadGroupInto(ctx, pid, &s); err != nil {
					b.Fatal(err)
				}
			}
		}
		perProcess(b)
	})
	b.Run("taskstats-process", func(b *testing.B) {
		b.ReportAllocs()
		var s Stats
		for b.Loop() {
			for _, pid := range pids {
				if err := c.ProcessInto(ctx, pid, &s); err != nil {
					b.Fatal(err)
				}
			}
		}
		perProcess(b)
	})
	b.Run("proc", func(b *testing.B) {
		b.ReportAllocs()
		r := newProcReader()
		var s procSample
		for b.Loop() {
			for _, pid := range pids {
				if err := r.sample(pid, &s); err != nil {
					b.Fatal(err)
				}
			}
		}
		perProcess(b)
	})
}
