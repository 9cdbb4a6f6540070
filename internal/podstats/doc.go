// Package podstats attaches the kernel's delay accounting of each pod to that pod's status: the
// node agent finds a pod's processes through its cgroup, samples them with pkg/taskstats once per
// window, and writes a pod condition of type kubelvs.io/TaskDelays saying whether the pod waits for
// CPU, block I/O or memory. It also holds the delay-aware weight function that scales a backend
// pod's IPVS weight down as its CPU delay rises.
//
// The core is pure and tested by tables:
//   - [Window]: per-process deltas of cumulative counters summed per pod, with the final records
//     of processes that exited in the window folded in (so a pod's totals never go backwards and
//     short-lived processes count), and PID reuse detected by start time and counter regression;
//   - [Rates] and [Thresholds.Condition]: fractions of wall time spent waiting, CPU time and I/O
//     bytes per second, and the condition they make;
//   - [ShouldWrite]: the write decision (only on a change of status or reason or a number moving
//     by more than a margin, and at most once per window per pod);
//   - [WeightFunc]: the bounded, hysteretic delay-aware weight.
//
// The edges are thin: [Discoverer] maps a pod UID to the PIDs in its cgroup (cgroup v1 and v2,
// systemd and cgroupfs drivers, containerd, CRI-O and Docker scope names) and re-checks each PID
// against /proc/<pid>/cgroup; [Sampler] asks pkg/taskstats for their records; [Reconciler] decides
// which pods to watch and patches their status.
package podstats
