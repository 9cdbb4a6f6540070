package podstats

import (
	"time"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

// Totals are the cumulative counters of one process (or their sum over a pod) that the pod
// condition and the metrics are made of. Delays are the kernel's delay totals; CPU is user plus
// system time; ReadBytes and WriteBytes are block I/O (storage) bytes.
type Totals struct {
	CPUDelay, BlkIO, SwapIn, FreePages, Thrashing, Compact, WPCopy, IRQ time.Duration

	CPU                   time.Duration
	ReadBytes, WriteBytes uint64
	// CPUCount is the number of times the tasks were scheduled (cpu_count): it only grows, so a
	// smaller value for the same PID means a different process (PID reuse).
	CPUCount uint64
}

// TotalsOf picks the counters of a taskstats record.
func TotalsOf(s *taskstats.Stats) Totals {
	return Totals{
		CPUDelay: s.CPU.Total, BlkIO: s.BlkIO.Total, SwapIn: s.SwapIn.Total, FreePages: s.FreePages.Total,
		Thrashing: s.Thrashing.Total, Compact: s.Compact.Total, WPCopy: s.WPCopy.Total, IRQ: s.IRQ.Total,
		CPU:       s.UserTime + s.SystemTime,
		ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes,
		CPUCount: s.CPU.Count,
	}
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	t.CPUDelay += o.CPUDelay
	t.BlkIO += o.BlkIO
	t.SwapIn += o.SwapIn
	t.FreePages += o.FreePages
	t.Thrashing += o.Thrashing
	t.Compact += o.Compact
	t.WPCopy += o.WPCopy
	t.IRQ += o.IRQ
	t.CPU += o.CPU
	t.ReadBytes += o.ReadBytes
	t.WriteBytes += o.WriteBytes
	t.CPUCount += o.CPUCount
}

// Since returns t - prev field by field, each clamped at zero: counters of one process only grow,
// except the summed I/O of its live threads, which loses the share of a thread that exited (the
// kernel keeps no per-process I/O total), so a delta is never negative.
func (t Totals) Since(prev Totals) Totals {
	d := func(a, b time.Duration) time.Duration { return max(a-b, 0) }
	u := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Totals{
		CPUDelay: d(t.CPUDelay, prev.CPUDelay), BlkIO: d(t.BlkIO, prev.BlkIO), SwapIn: d(t.SwapIn, prev.SwapIn),
		FreePages: d(t.FreePages, prev.FreePages), Thrashing: d(t.Thrashing, prev.Thrashing),
		Compact: d(t.Compact, prev.Compact), WPCopy: d(t.WPCopy, prev.WPCopy), IRQ: d(t.IRQ, prev.IRQ),
		CPU:       d(t.CPU, prev.CPU),
		ReadBytes: u(t.ReadBytes, prev.ReadBytes), WriteBytes: u(t.WriteBytes, prev.WriteBytes),
		CPUCount: u(t.CPUCount, prev.CPUCount),
	}
}

// Plausible returns t with every delay category longer than lifetime set to zero, and how many
// were. One thread waits in one place at a time, so a single-threaded task's delay cannot exceed
// its lifetime; measured on this project's 6.18 host, some exit records of processes doing
// synchronous direct writes carry a block I/O delay equal to the time since boot (a delay whose
// start was never recorded), which would swamp every other number of the pod.
func (t Totals) Plausible(lifetime time.Duration) (Totals, int) {
	n := 0
	for _, d := range []*time.Duration{&t.CPUDelay, &t.BlkIO, &t.SwapIn, &t.FreePages, &t.Thrashing, &t.Compact, &t.WPCopy, &t.IRQ} {
		if *d > lifetime {
			*d = 0
			n++
		}
	}
	return t, n
}
