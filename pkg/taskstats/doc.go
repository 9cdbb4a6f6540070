// Package taskstats reads the Linux kernel's per-task accounting (the TASKSTATS generic netlink
// family) through pkg/gnl: the statistics of a thread (PID), of a thread group (TGID), a
// process-level record composed to match /proc, the final records of exiting tasks (an exit
// listener on a CPU mask), cgroup v1 task-state counts (CGROUPSTATS), and a probe of what the
// environment allows.
//
// # Exact on every kernel
//
// struct taskstats is decoded by explicit offsets keyed on its version field and the payload
// length, never by casting to a Go struct: versions 8 through 17 are known, including version 15
// whose delay maxima and minima sit in the middle of the struct (an ABI break fixed by version 16,
// which has the same size). A newer version is decoded for the prefix this package knows and keeps
// its raw bytes; a payload shorter than its version needs is an error.
//
// # What the kernel reports where
//
// A TGID reply carries the delays, user and system time and context switches of every thread of
// the process (exited ones included) but, on recent kernels, zero I/O counters and no memory
// high-water marks. A PID reply carries those, with read/write chars and bytes rounded down to
// whole KiB. [Client.Process] therefore composes a process-level record from the TGID reply and
// the replies of the live threads; see its documentation for what it can and cannot include.
//
// Delay accounting other than CPU delay needs kernel.task_delayacct=1 (off by default since
// Linux 5.14); see [Probe]. Every request needs CAP_NET_ADMIN, and PIDs are those of the caller's
// PID namespace, so a node agent needs hostPID.
package taskstats
