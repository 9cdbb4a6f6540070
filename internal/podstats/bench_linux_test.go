package podstats

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/pkg/taskstats"
)

var (
	benchPods  = flag.Int("podstats.pods", 1000, "pods of the sampling benchmark")
	benchProcs = flag.Int("podstats.procs", 5, "processes per pod of the sampling benchmark")
)

// benchFixture is benchPods pod cgroups (kubelet's systemd layout, BestEffort) in the real cgroup2
// filesystem, each holding benchProcs sleeping processes.
type benchFixture struct {
	root string
	uids []string
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	tree := podTree(b, "kubelvs-podstats-bench")
	f := &benchFixture{root: tree.Root}
	for i := range *benchPods {
		uid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		f.uids = append(f.uids, uid)
		ctr := kubeletCgroup(b, tree, uid)
		for range *benchProcs {
			cmd := exec.Command("sleep", "3600")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			if err := os.WriteFile(filepath.Join(ctr, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	return f
}

// syscallCounter counts the system calls of the calling OS thread (perf tracepoint
// raw_syscalls:sys_enter); the benchmark locks its goroutine to that thread. Calls the Go runtime
// makes on other threads (the netpoller's epoll_wait) are not counted, for either contender.
type syscallCounter struct{ fd int }

func newSyscallCounter(b *testing.B) *syscallCounter {
	idb, err := os.ReadFile("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id")
	if err != nil {
		b.Fatalf("counting system calls needs tracefs: %v", err)
	}
	id, err := strconv.ParseUint(string(bytes.TrimSpace(idb)), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	attr := &unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Size: uint32(unsafeSizeofPerfAttr), Sample: 1}
	fd, err := unix.PerfEventOpen(attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		b.Fatalf("perf_event_open raw_syscalls:sys_enter: %v", err)
	}
	b.Cleanup(func() { _ = unix.Close(fd) })
	return &syscallCounter{fd: fd}
}

const unsafeSizeofPerfAttr = unix.PERF_ATTR_SIZE_VER5

func (c *syscallCounter) read(b *testing.B) uint64 {
	var buf [8]byte
	if _, err := unix.Read(c.fd, buf[:]); err != nil {
		b.Fatal(err)
	}
	return uint64(buf[0]) | uint64(buf[1])<<8 | uint64(buf[2])<<16 | uint64(buf[3])<<24 |
		uint64(buf[4])<<32 | uint64(buf[5])<<40 | uint64(buf[6])<<48 | uint64(buf[7])<<56
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSampleRound is the agent's cost of one sampling round of every pod of the fixture
// (1,000 pods of 5 processes by default): discovery, the records, and the /proc/<pid>/cgroup
// re-check. "taskstats" is the agent's Sampler; "procfs" reads the same fields from procfs
// (/proc/<pid>/stat for times, start and block I/O delay ticks, schedstat for CPU delay, io for
// bytes), which has no swap-in, reclaim, thrashing, compaction, write-protect copy or IRQ delay
// at all. Reported per pod: CPU time of the whole process and system calls of the sampling thread.
func BenchmarkSampleRound(b *testing.B) {
	f := newBenchFixture(b)
	ts, err := taskstats.Dial(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ts.Close()
	d := &Discoverer{CgroupRoot: f.root}
	s := &Sampler{Discoverer: d, Taskstats: ts}
	ctx := context.Background()
	want := len(f.uids) * *benchProcs
	var pids []int
	for _, uid := range f.uids {
		p, err := d.Discover(uid)
		if err != nil {
			b.Fatal(err)
		}
		pids = append(pids, p.PIDs...)
	}
	recs, errs := make([]taskstats.Stats, len(pids)), make([]error, len(pids))
	for _, c := range []struct {
		name  string
		round func() int
	}{
		{"taskstats", func() int {
			out, err := s.Sample(ctx, f.uids)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for i := range out {
				n += len(out[i].Procs)
			}
			return n
		}},
		{"procfs", func() int { return procfsRound(b, d, f.uids) }},
		// The records alone, for PIDs already known: what the two sources cost without the
		// discovery and re-check both share.
		{"taskstats-records", func() int {
			if err := ts.ProcessesInto(ctx, pids, recs, errs); err != nil {
				b.Fatal(err)
			}
			n := 0
			for _, e := range errs {
				if e == nil {
					n++
				}
			}
			return n
		}},
		{"procfs-records", func() int {
			n := 0
			for _, pid := range pids {
				if _, ok := procTotals(pid); ok {
					n++
				}
			}
			return n
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			sc := newSyscallCounter(b)
			if n := c.round(); n != want { // warm: the pods' directories found and cached
				b.Fatalf("a round sampled %d processes, want %d", n, want)
			}
			calls0, cpu0 := sc.read(b), cpuTime()
			b.ResetTimer()
			for b.Loop() {
				c.round()
			}
			b.StopTimer()
			rounds := float64(b.N) * float64(len(f.uids))
			b.ReportMetric(float64(cpuTime()-cpu0)/rounds/1e3, "cpu-µs/pod")
			b.ReportMetric(float64(sc.read(b)-calls0)/rounds, "syscalls/pod")
		})
	}
}

// procfsRound samples the pods from procfs: the peer of Sampler.Sample.
func procfsRound(b *testing.B, d *Discoverer, uids []string) int {
	n := 0
	for _, uid := range uids {
		p, err := d.Discover(uid)
		if err != nil {
			b.Fatal(err)
		}
		for _, pid := range p.PIDs {
			if _, ok := procTotals(pid); ok && d.InPod(pid, p.Name) {
				n++
			}
		}
	}
	return n
}

// procTotals reads a process's CPU time, CPU and block I/O delay, start and I/O bytes from procfs.
func procTotals(pid int) (ProcSample, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	var s ProcSample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, false
	}
	// Fields after the command name (which may hold spaces), from field 3 on.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+2:]))
	if len(f) < 40 {
		return s, false
	}
	tick := func(k int) time.Duration {
		v, _ := strconv.ParseUint(f[k-3], 10, 64)
		return time.Duration(v) * 10 * time.Millisecond
	}
	s.CPU = tick(14) + tick(15)
	s.Start = time.Unix(0, int64(tick(22)))
	s.BlkIO = tick(42)
	sched, err := os.ReadFile(dir + "/schedstat")
	if err != nil {
		return s, false
	}
	if sf := strings.Fields(string(sched)); len(sf) >= 2 {
		v, _ := strconv.ParseInt(sf[1], 10, 64)
		s.CPUDelay = time.Duration(v)
	}
	io, err := os.ReadFile(dir + "/io")
	if err != nil {
		return s, false
	}
	for line := range strings.Lines(string(io)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "read_bytes":
			s.ReadBytes = n
		case "write_bytes":
			s.WriteBytes = n
		}
	}
	s.PID = uint32(pid)
	return s, true
}
