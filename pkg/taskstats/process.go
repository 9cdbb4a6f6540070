package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

var tidBuffers = sync.Pool{New: func() any { return new([]int) }}

// Process returns a process-level record of the thread group pid that matches what /proc/<pid>
// reports, composed from one TGID request and one PID request per live thread (listed in
// <proc>/<pid>/task):
//
//   - from the TGID reply, which covers live and exited threads: the delays, CPU run totals,
//     user and system time and context switches;
//   - from the thread group leader's PID reply: the identity and accounting fields (comm, uid,
//     gid, pid, ppid, tgid, begin time, elapsed times, nice, policy, flags, exit code, binary);
//   - summed over the live threads: page faults, scaled times, accumulated memory (CoreMem,
//     VirtMem) and the I/O counters; the high-water marks are the largest any thread reports (the
//     threads share one address space);
//   - the longest and shortest delays (v15 and later) over the TGID reply and the live threads
//     (the kernel's TGID reply carries one thread's, not the group's extremes).
//
// The kernel keeps no per-process I/O or fault totals that taskstats exports, so the summed
// fields lack the share of threads that have exited, and unlike /proc/<pid>/io they never
// include the I/O of reaped children (the kernel adds a reaped child's I/O to its parent's
// /proc/<pid>/io). The kernel rounds each thread's read/write chars, bytes and syscall counts
// down to multiples of 1024. A process that is not there is an error matching os.ErrNotExist.
func (c *Client) Process(ctx context.Context, pid int) (*Stats, error) {
	s := new(Stats)
	if err := c.ProcessInto(ctx, pid, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ProcessInto is [Client.Process] decoding into s.
func (c *Client) ProcessInto(ctx context.Context, pid int, s *Stats) error {
	if err := c.ThreadGroupInto(ctx, pid, s); err != nil {
		return err
	}
	buf := tidBuffers.Get().(*[]int)
	defer tidBuffers.Put(buf)
	tids, err := listThreads(c.proc, pid, (*buf)[:0])
	if err != nil {
		return err
	}
	if !slices.Contains(tids, pid) {
		tids = append(tids, pid) // the leader is asked for in any case: its reply names the process
	}
	*buf = tids
	var (
		t      Stats
		leader bool
	)
	s.MinorFaults, s.MajorFaults, s.UserTimeScaled, s.SystemTimeScaled, s.CoreMem, s.VirtMem = 0, 0, 0, 0, 0, 0
	s.ReadChar, s.WriteChar, s.ReadSyscalls, s.WriteSyscalls = 0, 0, 0, 0
	s.ReadBytes, s.WriteBytes, s.CancelledWriteBytes = 0, 0, 0
	s.HiwaterRSSKiB, s.HiwaterVMKiB = 0, 0
	for _, tid := range tids {
		if err := c.ThreadInto(ctx, tid, &t); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited since the listing
			}
			return err
		}
		if t.TGID != 0 && t.TGID != uint32(pid) {
			continue // the id was reused by another process's thread since the listing
		}
		if tid == pid {
			leader = true
			s.Comm, s.ExitCode, s.Flag, s.Nice, s.Sched = t.Comm, t.ExitCode, t.Flag, t.Nice, t.Sched
			s.UID, s.GID, s.PID, s.PPID, s.TGID = t.UID, t.GID, t.PID, t.PPID, t.TGID
			s.BeginTime, s.Elapsed, s.ThreadGroupElapsed = t.BeginTime, t.Elapsed, t.ThreadGroupElapsed
			s.ExeDev, s.ExeInode = t.ExeDev, t.ExeInode
		}
		s.MinorFaults += t.MinorFaults
		s.MajorFaults += t.MajorFaults
		s.UserTimeScaled += t.UserTimeScaled
		s.SystemTimeScaled += t.SystemTimeScaled
		s.CoreMem += t.CoreMem
		s.VirtMem += t.VirtMem
		s.ReadChar += t.ReadChar
		s.WriteChar += t.WriteChar
		s.ReadSyscalls += t.ReadSyscalls
		s.WriteSyscalls += t.WriteSyscalls
		s.ReadBytes += t.ReadBytes
		s.WriteBytes += t.WriteBytes
		s.CancelledWriteBytes += t.CancelledWriteBytes
		s.HiwaterRSSKiB = max(s.HiwaterRSSKiB, t.HiwaterRSSKiB)
		s.HiwaterVMKiB = max(s.HiwaterVMKiB, t.HiwaterVMKiB)
		for i, d := range s.delays() {
			mergeExtremes(d, t.delays()[i])
		}
	}
	if !leader {
		return fmt.Errorf("taskstats: process %d: its thread group leader is gone: %w", pid, os.ErrNotExist)
	}
	return nil
}

// delays lists the delay categories, for loops over them.
func (s *Stats) delays() [8]*Delay {
	return [8]*Delay{&s.CPU, &s.BlkIO, &s.SwapIn, &s.FreePages, &s.Thrashing, &s.Compact, &s.WPCopy, &s.IRQ}
}

// mergeExtremes folds a thread's longest and shortest delay into the process's. The kernel fills
// a TGID reply's maxima and minima by assignment, thread after thread, so they are one thread's.
func mergeExtremes(p, t *Delay) {
	if t.Max > p.Max {
		p.Max, p.MaxAt = t.Max, t.MaxAt
	}
	if t.Min != 0 && (p.Min == 0 || t.Min < p.Min) {
		p.Min = t.Min
	}
}

// threads lists the thread ids of a process in procfs.
func (c *Client) threads(pid int) ([]int, error) {
	return listThreads(c.proc, pid, nil)
}
