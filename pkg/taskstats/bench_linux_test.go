package taskstats

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
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
// status). One op samples all 1,000; ns/process is the cost per process. taskstats-processes
// composes the same records for all 1,000 at once (ProcessesInto: their requests pipelined).
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
	b.Run("taskstats-processes", func(b *testing.B) {
		b.ReportAllocs()
		out, errs := make([]Stats, n), make([]error, n)
		for b.Loop() {
			if err := c.ProcessesInto(ctx, pids, out, errs); err != nil {
				b.Fatal(err)
			}
			for _, err := range errs {
				if err != nil {
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
	// The three, interleaved pass by pass so that they share whatever else the machine is doing
	// (a shared host's load drifts between sequential sub-benchmarks): one op is a pass of each
	// over the 1,000 processes; the metrics are each one's time per process and the ratios.
	b.Run("interleaved", func(b *testing.B) {
		r := newProcReader()
		var (
			s                            Stats
			ps                           procSample
			tgid, process, batched, proc time.Duration
		)
		out, errs := make([]Stats, n), make([]error, n)
		for b.Loop() {
			t0 := time.Now()
			for _, pid := range pids {
				if err := c.ThreadGroupInto(ctx, pid, &s); err != nil {
					b.Fatal(err)
				}
			}
			t1 := time.Now()
			for _, pid := range pids {
				if err := r.sample(pid, &ps); err != nil {
					b.Fatal(err)
				}
			}
			t2 := time.Now()
			for _, pid := range pids {
				if err := c.ProcessInto(ctx, pid, &s); err != nil {
					b.Fatal(err)
				}
			}
			t3 := time.Now()
			if err := c.ProcessesInto(ctx, pids, out, errs); err != nil {
				b.Fatal(err)
			}
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			t4 := time.Now()
			tgid, proc, process, batched = tgid+t1.Sub(t0), proc+t2.Sub(t1), process+t3.Sub(t2), batched+t4.Sub(t3)
		}
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*n) }
		b.ReportMetric(per(tgid), "tgid-ns/process")
		b.ReportMetric(per(process), "composed-ns/process")
		b.ReportMetric(per(proc), "proc-ns/process")
		b.ReportMetric(float64(proc)/float64(tgid), "proc/tgid")
		b.ReportMetric(float64(proc)/float64(process), "proc/composed")
		b.ReportMetric(per(batched), "batched-ns/process")
		b.ReportMetric(float64(proc)/float64(batched), "proc/batched")
	})
}
