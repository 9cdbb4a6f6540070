package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// processScratch is what a ProcessInto or ProcessesInto call needs, pooled: the leaders'
// records, the thread list and the batches of requests (their buffers are kept between calls).
type processScratch struct {
	leaders []Stats
	first   []int // index in the batch of each process's first request, -1 for none
	tids    []int
	batch   gnl.Batch
	threads gnl.Batch
}

var processScratches = sync.Pool{New: func() any { return new(processScratch) }}

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
//
// The leader's PID request and the TGID request go first, pipelined in one batch, in that order.
// When the TGID reply's CPU count, run time and context switches equal the leader's, no other
// thread (live or exited) has ever been on a CPU: the counters only grow, the TGID reply sums
// them over every thread and was read after the leader's, and a thread that never ran has all
// its counters at zero. Then the leader's reply is the live threads' sum and the threads are not
// listed. Otherwise the other threads are listed and asked for in a second batch.
func (c *Client) Process(ctx context.Context, pid int) (*Stats, error) {
	s := new(Stats)
	if err := c.ProcessInto(ctx, pid, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ProcessInto is [Client.Process] decoding into s.
func (c *Client) ProcessInto(ctx context.Context, pid int, s *Stats) error {
	var errs [1]error
	if err := c.ProcessesInto(ctx, []int{pid}, unsafe.Slice(s, 1), errs[:]); err != nil {
		return err
	}
	return errs[0]
}

// ProcessesInto is [Client.Process] for many processes at once, as a node agent samples them:
// the leader and TGID requests of every process go in one pipelined batch (many requests per
// sendmsg), then the processes whose other threads have run get their threads listed and asked
// for. out[i] receives the record of pids[i] and errs[i] its error (nil when out[i] is valid);
// both must be as long as pids. The returned error is one that stopped the whole batch (the
// connection, the context), also set in the errs it left unanswered.
func (c *Client) ProcessesInto(ctx context.Context, pids []int, out []Stats, errs []error) error {
	if len(out) != len(pids) || len(errs) != len(pids) {
		return fmt.Errorf("taskstats: %d processes, %d records and %d errors: %w", len(pids), len(out), len(errs), os.ErrInvalid)
	}
	sc := processScratches.Get().(*processScratch)
	defer processScratches.Put(sc)
	sc.leaders = slices.Grow(sc.leaders[:0], len(pids))[:len(pids)]
	sc.first = slices.Grow(sc.first[:0], len(pids))[:len(pids)]
	b := &sc.batch
	b.Reset()
	for i, pid := range pids {
		sc.first[i], errs[i] = -1, nil
		if pid <= 0 || pid > 1<<31-1 {
			errs[i] = fmt.Errorf("taskstats: process %d: %w", pid, os.ErrInvalid)
			continue
		}
		leader, s := &sc.leaders[i], &out[i]
		sc.first[i] = b.Len()
		err := getPID.AddDo(b, &getRequest{PID: uint32(pid)}, func(rep *pidReply) error {
			if !rep.Seen.Has(4) || !rep.AggrPID.Seen.Has(3) {
				return fmt.Errorf("%w: reply without the thread's statistics", gnl.ErrUnexpectedReply)
			}
			*leader = rep.AggrPID.Stats
			return nil
		})
		if err == nil {
			err = getTGID.AddDo(b, &getRequest{TGID: uint32(pid)}, func(rep *tgidReply) error {
				if !rep.Seen.Has(5) || !rep.AggrTGID.Seen.Has(3) {
					return fmt.Errorf("%w: reply without the aggregate statistics", gnl.ErrUnexpectedReply)
				}
				*s = rep.AggrTGID.Stats
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("taskstats: process %d: %w", pid, err)
		}
	}
	if err := c.conn.SendBatch(ctx, b); err != nil {
		what := fmt.Sprintf("%d processes", len(pids))
		if len(pids) == 1 {
			what = fmt.Sprintf("process %d", pids[0])
		}
		err = c.wrap(what, err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return err
	}
	for i, pid := range pids {
		if k := sc.first[i]; k >= 0 {
			errs[i] = c.compose(ctx, sc, pid, &out[i], &sc.leaders[i], b.Err(k), b.Err(k+1))
		}
	}
	return nil
}

// compose finishes the record of process pid from the results of its leader (lerr) and TGID
// (gerr) requests, asking for its other threads when they have run.
func (c *Client) compose(ctx context.Context, sc *processScratch, pid int, s, leader *Stats, lerr, gerr error) error {
	if gerr != nil {
		return c.wrap(fmt.Sprintf("TGID %d", pid), gerr)
	}
	if lerr != nil {
		if !errors.Is(lerr, syscall.ESRCH) {
			return c.wrap(fmt.Sprintf("PID %d", pid), lerr)
		}
		return fmt.Errorf("taskstats: process %d: its thread group leader is gone: %w", pid, os.ErrNotExist)
	}
	alone := leader.CPU.Count > 0 && s.CPU.Count == leader.CPU.Count &&
		s.CPURunVirtualTotal == leader.CPURunVirtualTotal && s.Nvcsw == leader.Nvcsw && s.Nivcsw == leader.Nivcsw
	s.MinorFaults, s.MajorFaults, s.UserTimeScaled, s.SystemTimeScaled, s.CoreMem, s.VirtMem = 0, 0, 0, 0, 0, 0
	s.ReadChar, s.WriteChar, s.ReadSyscalls, s.WriteSyscalls = 0, 0, 0, 0
	s.ReadBytes, s.WriteBytes, s.CancelledWriteBytes = 0, 0, 0
	s.HiwaterRSSKiB, s.HiwaterVMKiB = 0, 0
	if !addThread(s, pid, pid, leader) {
		return fmt.Errorf("taskstats: process %d: its thread group leader is gone: %w", pid, os.ErrNotExist)
	}
	if alone {
		return nil
	}

	tids, err := listThreads(c.proc, pid, sc.tids[:0])
	sc.tids = tids
	if err != nil {
		return err
	}
	b := &sc.threads
	b.Reset()
	for _, tid := range tids {
		if tid == pid {
			continue
		}
		err := getPID.AddDo(b, &getRequest{PID: uint32(tid)}, func(rep *pidReply) error {
			if !rep.Seen.Has(4) || !rep.AggrPID.Seen.Has(3) {
				return fmt.Errorf("%w: reply without the thread's statistics", gnl.ErrUnexpectedReply)
			}
			addThread(s, pid, tid, &rep.AggrPID.Stats)
			return nil
		})
		if err != nil {
			return fmt.Errorf("taskstats: process %d: %w", pid, err)
		}
	}
	if err := c.conn.SendBatch(ctx, b); err != nil {
		return c.wrap(fmt.Sprintf("process %d", pid), err)
	}
	i := 0
	for _, tid := range tids {
		if tid == pid {
			continue
		}
		if err := b.Err(i); err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: exited since the listing
			return c.wrap(fmt.Sprintf("PID %d", tid), err)
		}
		i++
	}
	return nil
}

// addThread adds a live thread's reply to the process record s, and reports whether it did:
// a thread id reused by another process's thread since the listing is left out. The leader's
// (tid == pid) names the process.
func addThread(s *Stats, pid, tid int, t *Stats) bool {
	if t.TGID != 0 && t.TGID != uint32(pid) {
		return false
	}
	if tid == pid {
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
	sd, td := s.delays(), t.delays()
	for i := range sd {
		mergeExtremes(sd[i], td[i])
	}
	return true
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
