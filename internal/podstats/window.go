package podstats

import (
	"time"
)

// Proc identifies one process across samples: its PID and its start time. A PID with another
// start time is another process (the PID was reused).
type Proc struct {
	PID   uint32
	Start time.Time
}

// ProcSample is one process's cumulative counters at a sample.
type ProcSample struct {
	Proc
	Totals
}

// Window accumulates one pod's usage between two samples. Live processes contribute the growth
// of their counters since the previous sample (a process seen for the first time contributes
// everything since it started, so that one that started in the window counts whole); a process
// that exits contributes its final record minus what was already counted. The sum of everything
// counted only grows. A Window is used from one goroutine.
type Window struct {
	prev   map[uint32]ProcSample // by PID: the processes of the last sample, as counted so far
	acc    Totals                // counted since the last Close
	exited int                   // exits folded in since the last Close
	total  Totals                // everything ever counted
	primed bool                  // a sample has been taken: a new process's counters are all new
	at     time.Time             // when the last sample was taken

	implausible int
}

// startSlack covers the rounding of a task's start time to whole seconds.
const startSlack = time.Second

// NewWindow returns an empty Window.
func NewWindow() *Window { return &Window{prev: map[uint32]ProcSample{}} }

// Exit folds in the final record of a process of the pod that exited. Its counters minus what
// the previous sample counted of the same process are added; a process the previous sample did
// not have (one that started since, or a different process with the same PID: the start time
// differs or a counter went backwards) counts whole, if it started after that sample. Exits
// before the first sample count nothing.
func (w *Window) Exit(final ProcSample) {
	if !w.primed {
		return
	}
	p, ok := w.prev[final.PID]
	switch {
	case ok && same(p, final):
		w.count(final.Since(p.Totals))
	case w.startedSince(final.Start):
		w.count(final.Totals)
	}
	if ok {
		delete(w.prev, final.PID)
	}
	w.exited++
}

// Sample adds the live processes' growth since the previous sample, taken at time at, and makes
// them the new reference. The very first sample of a pod counts nothing: it only sets the
// reference, since the counters before it belong to no window. A process seen for the first time
// counts whole when it started after the previous sample, and otherwise (it was missed, or moved
// into the pod's cgroup) only sets its reference: its history belongs to no window of this pod. A
// process that disappeared without an exit record (a dropped one) contributes nothing more.
func (w *Window) Sample(at time.Time, live []ProcSample) {
	next := make(map[uint32]ProcSample, len(live))
	for _, s := range live {
		p, ok := w.prev[s.PID]
		switch {
		case ok && same(p, s):
			w.count(w.plausible(s.Since(p.Totals), at.Sub(w.at)))
		case w.primed && w.startedSince(s.Start):
			w.count(w.plausible(s.Totals, at.Sub(s.Start)+startSlack))
		}
		next[s.PID] = s
	}
	w.prev, w.primed, w.at = next, true, at
}

// MaxWaitingThreads bounds how many threads of one process can have waited at once: a delay
// growth larger than this many times the time it grew in is impossible in practice, and is
// dropped (see [Totals.Plausible]: this project's 6.18 host reports delays equal to the time
// since boot now and then).
const MaxWaitingThreads = 64

func (w *Window) plausible(d Totals, over time.Duration) Totals {
	d, n := d.Plausible(over * MaxWaitingThreads)
	w.implausible += n
	return d
}

// Implausible is how many delay values were dropped as impossible so far.
func (w *Window) Implausible() int { return w.implausible }

// startedSince reports whether a process that started at start (whole seconds) may have started
// after the previous sample.
func (w *Window) startedSince(start time.Time) bool {
	return !start.Add(startSlack).Before(w.at)
}

// Primed reports whether a first sample set the reference (a window before that is meaningless).
func (w *Window) Primed() bool { return w.primed }

// Procs is how many live processes the last sample had.
func (w *Window) Procs() int { return len(w.prev) }

// Close returns what was counted since the previous Close and how many exits were folded in,
// and starts a new window.
func (w *Window) Close() (Totals, int) {
	acc, n := w.acc, w.exited
	w.acc, w.exited = Totals{}, 0
	return acc, n
}

// Total is everything counted since the Window was made: it never decreases.
func (w *Window) Total() Totals { return w.total }

func (w *Window) count(d Totals) {
	w.acc.Add(d)
	w.total.Add(d)
}

// same reports whether two samples with one PID are of the same process: start times at most
// startSlack apart and no counter that only grows went backwards. The kernel computes a task's
// start time anew for every record, as the wall clock's whole seconds minus the whole seconds the
// task has run (tsacct.c: ktime_get_real_seconds() - ac_etime/USEC_PER_SEC), so one process's
// start time moves by a second between records depending on where within a second each is taken;
// demanding equal start times took the process for a new one in about every other window and
// counted nothing of it there (a starved pod measured at 0 % delay, its weight flapping).
func same(prev, cur ProcSample) bool {
	d := cur.Start.Sub(prev.Start)
	return d <= startSlack && d >= -startSlack &&
		cur.CPUCount >= prev.CPUCount && cur.CPU >= prev.CPU && cur.CPUDelay >= prev.CPUDelay
}
