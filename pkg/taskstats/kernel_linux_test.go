package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/taskstats/internal/workload"
)

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on every architecture we run).
var userHZ = time.Second / 100

// movingFields are the fields that change with the passing of time alone, not with what a
// task does; comparisons of two samples of an idle task ignore them.
var movingFields = cmpopts.IgnoreFields(Stats{}, "Elapsed", "ThreadGroupElapsed", "CoreMem", "VirtMem")

// taskSums adds up per-thread /proc files (/proc/<pid>/schedstat and the context switches in
// /proc/<pid>/status describe the leader thread only).
type taskSums struct {
	Threads                         int
	RunDelayNs, Pcount, Nvcsw, Nivc uint64
}

func readTaskSums(r *procReader, pid int) (taskSums, error) {
	var ts taskSums
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return ts, err
	}
	for _, e := range ents {
		var s procSample
		b, err := r.read(pid, "task/"+e.Name()+"/schedstat")
		if err != nil {
			return ts, err
		}
		f := fieldsN(nil, b, 3)
		if len(f) != 3 {
			return ts, fmt.Errorf("schedstat %q", b)
		}
		ts.RunDelayNs += atou(f[1])
		ts.Pcount += atou(f[2])
		if b, err = r.read(pid, "task/"+e.Name()+"/status"); err != nil {
			return ts, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "voluntary_ctxt_switches":
				s.Nvcsw = atou([]byte(strings.TrimSpace(v)))
			case "nonvoluntary_ctxt_switches":
				s.Nivcsw = atou([]byte(strings.TrimSpace(v)))
			}
		}
		ts.Nvcsw += s.Nvcsw
		ts.Nivc += s.Nivcsw
		ts.Threads++
	}
	return ts, nil
}

// quietSample samples an idle process through taskstats and /proc until two taskstats samples
// taken around the /proc reads agree (the Go runtime of a workload may still wake up now and
// then), so that the numbers compared describe the same moment.
func quietSample(t *testing.T, c *Client, pid int) (proc *Stats, leader *Stats, ps procSample, sums taskSums) {
	t.Helper()
	ctx := testContext(t)
	r := newProcReader()
	for try := 0; try < 50; try++ {
		a, err := c.Process(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		la, err := c.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.sample(pid, &ps); err != nil {
			t.Fatal(err)
		}
		if sums, err = readTaskSums(r, pid); err != nil {
			t.Fatal(err)
		}
		b, err := c.Process(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := c.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Equal(a, b, movingFields) && cmp.Equal(la, lb, movingFields) {
			return b, lb, ps, sums
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d never stood still long enough to compare", pid)
	return nil, nil, ps, sums
}

// equal, within and below state the tolerances of the comparisons with /proc.
func equal(t *testing.T, what string, taskstats, proc uint64) {
	t.Helper()
	if taskstats != proc {
		t.Errorf("%s: taskstats %d, /proc %d (want equal)", what, taskstats, proc)
	}
}

func within(t *testing.T, what string, taskstats, proc, tol time.Duration) {
	t.Helper()
	if d := taskstats - proc; d > tol || d < -tol {
		t.Errorf("%s: taskstats %v, /proc %v: differ by %v, tolerance %v", what, taskstats, proc, d, tol)
	}
}

// kibBelow: the kernel rounds each thread's byte counters down to whole KiB in taskstats
// (xacct_add_tsk), so a sum over n threads is up to n KiB (exclusive) below /proc's.
func kibBelow(t *testing.T, what string, taskstats, proc uint64, threads int) {
	t.Helper()
	if taskstats > proc || proc-taskstats >= uint64(threads)*1024 {
		t.Errorf("%s: taskstats %d, /proc %d: want /proc-taskstats in [0, %d) (KiB rounding of %d threads)", what, taskstats, proc, threads*1024, threads)
	}
}

func TestProcessAgreesWithProc(t *testing.T) {
	c := kernelClient(t)
	const threads, burn, write, read, cancel, touch = 2, 300 * time.Millisecond, 4 << 20, 2 << 20, 1 << 20, 64
	p := startWorkload(t, workload.Spec{Threads: threads, Burn: burn, WriteBytes: write, ReadBytes: read, CancelBytes: cancel, TouchMiB: touch})
	s, leader, ps, sums := quietSample(t, c, p.PID)
	t.Logf("taskstats: %+v", *s)
	t.Logf("/proc: %+v, threads: %+v", ps, sums)

	// The workload's work shows.
	rtime := s.CPURunVirtualTotal // precise run time of all threads (se.sum_exec_runtime)
	if rtime < threads*burn*9/10 || s.UserTime+s.SystemTime < threads*burn*8/10 {
		t.Errorf("CPU time %v (sampled %v+%v), want about %v", rtime, s.UserTime, s.SystemTime, threads*burn)
	}
	if s.WriteChar < threads*(write+cancel) || s.WriteBytes < threads*write || s.ReadBytes < read || s.CancelledWriteBytes == 0 {
		t.Errorf("I/O wchar %d write_bytes %d read_bytes %d cancelled %d, want >= %d, %d, %d, > 0",
			s.WriteChar, s.WriteBytes, s.ReadBytes, s.CancelledWriteBytes, threads*(write+cancel), threads*write, read)
	}
	if s.BlkIO.Count == 0 || s.BlkIO.Total == 0 {
		t.Errorf("block I/O delay %+v: want some (delay accounting is on for the workload)", s.BlkIO)
	}
	if s.HiwaterRSSKiB < threads*touch<<10 {
		t.Errorf("hiwater RSS %d KiB, want >= %d", s.HiwaterRSSKiB, threads*touch<<10)
	}
	if s.Comm == "" || s.PID != uint32(p.PID) || s.TGID != uint32(p.PID) || s.PPID != uint32(os.Getpid()) {
		t.Errorf("identity: comm %q pid %d tgid %d ppid %d, want pid and tgid %d, ppid %d", s.Comm, s.PID, s.TGID, s.PPID, p.PID, os.Getpid())
	}

	// /proc/<pid>/stat. It reports the sampled user/system split scaled so that the two add up to
	// the precise run time (cputime_adjust), each truncated to USER_HZ ticks; taskstats reports
	// the sampled times unscaled, in µs. So: the /proc total is the run time less at most two
	// ticks, and the /proc user time is taskstats' share of user time applied to the run time,
	// within two ticks plus 2% (the kernel keeps the adjusted values monotonic over time).
	procUser, procSys := time.Duration(ps.UtimeTicks)*userHZ, time.Duration(ps.StimeTicks)*userHZ
	if total := procUser + procSys; total > rtime || total <= rtime-2*userHZ {
		t.Errorf("utime+stime: /proc %v, taskstats run time %v: want (run time - 2 ticks, run time]", total, rtime)
	}
	share := time.Duration(float64(rtime) * float64(s.UserTime) / float64(s.UserTime+s.SystemTime))
	within(t, "utime (scaled to the run time)", share, procUser, 2*userHZ+rtime/50)
	// The sampled total itself is within 10% of the run time, plus 10 ms per thread (a tick at
	// HZ=100, 2.5 ticks at this host's 250): each thread can gain or lose a partial tick.
	within(t, "sampled utime+stime vs run time", s.UserTime+s.SystemTime, rtime, rtime/10+time.Duration(sums.Threads)*userHZ)
	equal(t, "minor faults", s.MinorFaults, ps.MinFlt)
	equal(t, "major faults", s.MajorFaults, ps.MajFlt)

	// /proc/<pid>/io: within the rounding (the workload has no exited threads and no children,
	// whose I/O /proc would include). The kernel rounds the syscall counts down to multiples of
	// 1024 per thread too (the same KB_MASK as the byte counts).
	kibBelow(t, "syscr", s.ReadSyscalls, ps.SyscR, sums.Threads)
	kibBelow(t, "syscw", s.WriteSyscalls, ps.SyscW, sums.Threads)
	kibBelow(t, "rchar", s.ReadChar, ps.RChar, sums.Threads)
	kibBelow(t, "wchar", s.WriteChar, ps.WChar, sums.Threads)
	kibBelow(t, "read_bytes", s.ReadBytes, ps.ReadBytes, sums.Threads)
	kibBelow(t, "write_bytes", s.WriteBytes, ps.WriteBytes, sums.Threads)
	kibBelow(t, "cancelled_write_bytes", s.CancelledWriteBytes, ps.CancelledWriteBytes, sums.Threads)

	// /proc/<pid>/schedstat (the leader thread): run delay = CPU delay total, timeslices = CPU
	// count, exactly; summed over /proc/<pid>/task/*, the same for the process.
	equal(t, "leader run delay (schedstat field 2)", uint64(leader.CPU.Total), ps.RunDelayNs)
	equal(t, "leader timeslices (schedstat field 3)", leader.CPU.Count, ps.Pcount)
	equal(t, "leader run time (schedstat field 1)", uint64(leader.CPURunVirtualTotal), ps.RunNs)
	equal(t, "process run delay (sum of task/*/schedstat)", uint64(s.CPU.Total), sums.RunDelayNs)
	equal(t, "process timeslices (sum of task/*/schedstat)", s.CPU.Count, sums.Pcount)

	// /proc/<pid>/status: VmPeak exactly. VmHWM is max(high-water mark, current RSS) on both
	// sides, but taskstats reads the current RSS from the per-CPU counters approximately
	// (percpu_counter_read) where /proc sums them exactly: they may differ by the counters'
	// per-CPU batch (max(32, 2*CPUs) pages) times the CPUs times the three RSS counters (file,
	// anon, shmem). Context switches of the leader, and summed over the threads for the process,
	// exactly.
	rssSlack := 3 * uint64(runtime.NumCPU()) * uint64(max(32, 2*runtime.NumCPU())) * uint64(os.Getpagesize()/1024)
	if d := int64(s.HiwaterRSSKiB) - int64(ps.VmHWMKiB); d > int64(rssSlack) || -d > int64(rssSlack) {
		t.Errorf("VmHWM: taskstats %d KiB, /proc %d KiB: differ by more than the per-CPU counter slack %d KiB", s.HiwaterRSSKiB, ps.VmHWMKiB, rssSlack)
	}
	equal(t, "VmPeak", s.HiwaterVMKiB, ps.VmPeakKiB)
	equal(t, "leader voluntary_ctxt_switches", leader.Nvcsw, ps.Nvcsw)
	equal(t, "leader nonvoluntary_ctxt_switches", leader.Nivcsw, ps.Nivcsw)
	equal(t, "process voluntary_ctxt_switches", s.Nvcsw, sums.Nvcsw)
	equal(t, "process nonvoluntary_ctxt_switches", s.Nivcsw, sums.Nivc)
}

// groupSum adds up the fields a TGID reply aggregates over threads.
type groupSum struct {
	Delays                            [8][2]uint64 // count, total of each category
	RunReal, RunVirtual, Utime, Stime time.Duration
	Nvcsw, Nivcsw                     uint64
}

func sumOf(s *Stats) groupSum {
	var g groupSum
	for i, d := range []Delay{s.CPU, s.BlkIO, s.SwapIn, s.FreePages, s.Thrashing, s.Compact, s.WPCopy, s.IRQ} {
		g.Delays[i] = [2]uint64{d.Count, uint64(d.Total)}
	}
	g.RunReal, g.RunVirtual, g.Utime, g.Stime = s.CPURunRealTotal, s.CPURunVirtualTotal, s.UserTime, s.SystemTime
	g.Nvcsw, g.Nivcsw = s.Nvcsw, s.Nivcsw
	return g
}

func (g *groupSum) add(o groupSum) {
	for i := range g.Delays {
		g.Delays[i][0] += o.Delays[i][0]
		g.Delays[i][1] += o.Delays[i][1]
	}
	g.RunReal += o.RunReal
	g.RunVirtual += o.RunVirtual
	g.Utime += o.Utime
	g.Stime += o.Stime
	g.Nvcsw += o.Nvcsw
	g.Nivcsw += o.Nivcsw
}

// quietGroup samples the TGID reply and every thread's reply until two TGID replies around the
// thread replies agree.
func quietGroup(t *testing.T, c *Client, pid int) (group, threads groupSum, n int) {
	t.Helper()
	ctx := testContext(t)
	for try := 0; try < 50; try++ {
		a, err := c.ThreadGroup(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		tids, err := c.threads(pid)
		if err != nil {
			t.Fatal(err)
		}
		threads = groupSum{}
		for _, tid := range tids {
			s, err := c.Thread(ctx, tid)
			if err != nil {
				t.Fatal(err)
			}
			threads.add(sumOf(s))
		}
		b, err := c.ThreadGroup(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Equal(a, b, movingFields) {
			return sumOf(b), threads, len(tids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d never stood still long enough to compare", pid)
	return
}

func TestThreadGroupIsSumOfThreads(t *testing.T) {
	c := kernelClient(t)
	p := startWorkload(t, workload.Spec{Threads: 4, Burn: 100 * time.Millisecond, WriteBytes: 256 << 10, ReadBytes: 256 << 10})
	group, threads, n := quietGroup(t, c, p.PID)
	t.Logf("%d threads: group %+v", n, group)
	if n < 5 {
		t.Fatalf("%d threads, want at least the 4 workers and the main thread", n)
	}
	// The kernel adds up the per-thread values it reports (delays and run times in ns, user and
	// system time in µs, each truncated per thread), so the sums agree to the unit.
	if diff := cmp.Diff(threads, group); diff != "" {
		t.Errorf("TGID reply differs from the sum of its %d threads (-threads +tgid):\n%s", n, diff)
	}
	if group.Delays[1][0] == 0 {
		t.Errorf("no block I/O delays recorded: %+v", group.Delays)
	}
}

func TestThreadGroupIncludesExitedThreads(t *testing.T) {
	c := kernelClient(t)
	const exited, burn = 3, 150 * time.Millisecond
	p := startWorkload(t, workload.Spec{Threads: 1, ExitThreads: exited, Burn: burn})
	group, live, n := quietGroup(t, c, p.PID)
	t.Logf("%d live threads: group %+v, live threads %+v", n, group, live)
	if got := group.RunVirtual - live.RunVirtual; got < exited*burn*95/100 {
		t.Errorf("TGID run time exceeds the live threads' by %v, want the %d exited threads' %v", got, exited, exited*burn)
	}
	if group.Delays[0][0] <= live.Delays[0][0] {
		t.Errorf("TGID CPU delay count %d, live threads %d: want the exited threads' too", group.Delays[0][0], live.Delays[0][0])
	}
	// /proc/<pid>/stat includes exited threads too. Its utime and stime are each scaled to the
	// run time, kept monotonic against earlier reads (cputime_adjust) and truncated to ticks, for
	// the live threads and for the exited ones separately: the sum lands within a couple of ticks
	// of the run time, on either side.
	s, _, ps, _ := quietSample(t, c, p.PID)
	if total := time.Duration(ps.UtimeTicks+ps.StimeTicks) * userHZ; total > s.CPURunVirtualTotal+userHZ || total <= s.CPURunVirtualTotal-2*userHZ {
		t.Errorf("utime+stime: /proc %v, taskstats run time %v", total, s.CPURunVirtualTotal)
	}
}

func TestNotExist(t *testing.T) {
	c := kernelClient(t)
	ctx := testContext(t)
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	missing := pidMax // PIDs are below pid_max
	for name, f := range map[string]func() error{
		"Thread":      func() error { _, err := c.Thread(ctx, missing); return err },
		"ThreadGroup": func() error { _, err := c.ThreadGroup(ctx, missing); return err },
		"Process":     func() error { _, err := c.Process(ctx, missing); return err },
	} {
		err := f()
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s(%d): %v, want an error matching os.ErrNotExist", name, missing, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := c.Thread(ctx, 0); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Thread(0): %v, want os.ErrInvalid", err)
	}
	// The client still works after errors.
	if _, err := c.Process(ctx, os.Getpid()); err != nil {
		t.Errorf("Process(self) after errors: %v", err)
	}
}

func TestProbe(t *testing.T) {
	c := kernelClient(t)
	env, err := c.Probe(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", env)
	if !env.DelayAccountingKnown || !env.DelayAccounting {
		t.Errorf("delay accounting %v (known %v), want on: TestMain turned it on", env.DelayAccounting, env.DelayAccountingKnown)
	}
	if !env.Permitted || env.Version < MinVersion {
		t.Errorf("permitted %v (%v), version %d", env.Permitted, env.PermissionError, env.Version)
	}
	if !env.HostPIDs {
		t.Errorf("HostPIDs false; the tests run in the host PID namespace")
	}
}

// TestPermission drops CAP_NET_ADMIN in a child (setpriv) and checks the error names it.
func TestPermission(t *testing.T) {
	kernelClient(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux, essential on Debian) is not installed: cannot drop CAP_NET_ADMIN in a child")
	}
	cmd := exec.Command(setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), permissionChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child without CAP_NET_ADMIN: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD OK") {
		t.Fatalf("child did not run its check:\n%s", out)
	}
	t.Logf("%s", out)
}

// permissionChild runs in the child of TestPermission (see TestMain): without CAP_NET_ADMIN,
// requests fail with an error naming it, and the probe says so.
func permissionChild() error {
	var hdr unix.CapUserHeader
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0 {
		return errors.New("CAP_NET_ADMIN still effective")
	}
	c, err := Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	_, perr := c.Thread(ctx, os.Getpid())
	if !errors.Is(perr, ErrPermission) || !errors.Is(perr, os.ErrPermission) || !strings.Contains(perr.Error(), "CAP_NET_ADMIN") {
		return fmt.Errorf("without CAP_NET_ADMIN: %w, want ErrPermission naming CAP_NET_ADMIN", perr)
	}
	env, err := c.Probe(ctx)
	if err != nil || env.Permitted || !errors.Is(env.PermissionError, ErrPermission) {
		return fmt.Errorf("probe without CAP_NET_ADMIN: %+v, %w", env, err)
	}
	fmt.Println("CHILD OK:", perr)
	return nil
}

func TestCgroupStats(t *testing.T) {
	c := kernelClient(t)
	ctx := testContext(t)
	// A named cgroup v1 hierarchy of our own (no controllers), so the test needs no particular
	// host layout and leaves the host's cgroups alone.
	root := t.TempDir()
	if err := unix.Mount("cgroup", root, "cgroup", 0, "none,name=kubelvs-taskstats-test"); err != nil {
		t.Skipf("cannot mount a named cgroup v1 hierarchy (kernel without cgroup v1?): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	dir := filepath.Join(root, "group")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// cat blocked reading a pipe sleeps in TASK_INTERRUPTIBLE proper (sleep(1) would not count:
	// nanosleep adds TASK_FREEZABLE, a state cgroupstats counts nowhere).
	sleeper := exec.Command("cat")
	stdin, err := sleeper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0)
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
		_ = os.Remove(dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	wait := func(want CgroupStats) {
		t.Helper()
		var got *CgroupStats
		for try := 0; try < 200; try++ { // until the task is in the state
			var err error
			if got, err = c.CgroupStats(ctx, dir); err != nil {
				t.Fatal(err)
			}
			if *got == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("cgroupstats (-want +got):\n%s", cmp.Diff(&want, got))
	}
	wait(CgroupStats{Sleeping: 1})
	if err := sleeper.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	wait(CgroupStats{Stopped: 1})
	if err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	wait(CgroupStats{}) // moved out
	if _, err := c.CgroupStats(ctx, filepath.Join(dir, "cgroup.procs")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("cgroupstats of a file: %v, want EINVAL", err)
	}
	// cgroup v2 directories are refused by the kernel.
	var v2 string
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			v2 = d
			break
		}
	}
	if v2 != "" {
		if _, err := c.CgroupStats(ctx, v2); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("cgroupstats of the cgroup v2 directory %s: %v, want EINVAL", v2, err)
		}
	}
}

// TestProcessSingleThreaded: for a single-threaded process the kernel's TGID reply carries the
// leader's counters, so Process needs no thread listing: with a procfs that lists nothing it
// still composes the record, equal to the leader's and the group's replies; a multi-threaded
// process, whose threads must be listed, then fails.
func TestProcessSingleThreaded(t *testing.T) {
	kc := kernelClient(t)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	conn, err := gnl.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn, t.TempDir()) // an empty procfs
	defer c.Close()
	ctx := testContext(t)
	// Let sleep finish starting (exec, loading): Process compares the leader's and the group's
	// replies, taken a moment apart, and they differ while the task runs.
	for try := 0; ; try++ {
		a, err := kc.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		b, err := kc.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if cmp.Equal(a, b, movingFields) && a.CPU.Count > 0 {
			break
		}
		if try == 100 {
			t.Fatal("sleep never stood still")
		}
	}
	for try := 0; ; try++ {
		l, err := kc.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		g, err := kc.ThreadGroup(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Process(ctx, pid)
		if err != nil {
			t.Fatalf("single-threaded sleep %d with an empty procfs: %v", pid, err)
		}
		l2, err := kc.Thread(ctx, pid)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(l, l2, movingFields) {
			if try == 50 {
				t.Fatal("sleep never stood still")
			}
			time.Sleep(20 * time.Millisecond)
			continue // it was still starting up: sample again
		}
		if s.Comm != "sleep" || s.PID != uint32(pid) || s.MinorFaults != l.MinorFaults || s.ReadChar != l.ReadChar ||
			s.HiwaterRSSKiB != l.HiwaterRSSKiB || s.CPU.Count != g.CPU.Count || s.Nvcsw != g.Nvcsw || s.UserTime != g.UserTime {
			t.Errorf("composed %+v\nleader %+v\ngroup %+v", *s, *l, *g)
		}
		break
	}
	p := startWorkload(t, workload.Spec{Threads: 2, Burn: 50 * time.Millisecond})
	if _, err := c.Process(ctx, p.PID); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("multi-threaded process %d with an empty procfs: %v, want its thread listing to fail", p.PID, err)
	}
}

// TestProcessesInto: many processes at once on the real kernel; a single-threaded one, a
// multi-threaded one whose threads did the I/O (so their replies must have been added) and a
// missing one.
func TestProcessesInto(t *testing.T) {
	c := kernelClient(t)
	ctx := testContext(t)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	const threads, write = 2, 256 << 10
	p := startWorkload(t, workload.Spec{Threads: threads, Burn: 20 * time.Millisecond, WriteBytes: write})
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	missing, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{cmd.Process.Pid, p.PID, missing}
	out, errs := make([]Stats, len(pids)), make([]error, len(pids))
	if err := c.ProcessesInto(ctx, pids, out, errs); err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || out[0].PID != uint32(cmd.Process.Pid) || out[0].Comm != "sleep" {
		t.Errorf("sleep %d: %v, pid %d comm %q", cmd.Process.Pid, errs[0], out[0].PID, out[0].Comm)
	}
	if errs[1] != nil || out[1].PID != uint32(p.PID) || out[1].WriteChar < threads*write || out[1].CPU.Count == 0 {
		t.Errorf("workload %d: %v, pid %d, wchar %d (want >= %d), CPU count %d", p.PID, errs[1], out[1].PID, out[1].WriteChar, threads*write, out[1].CPU.Count)
	}
	if !errors.Is(errs[2], os.ErrNotExist) {
		t.Errorf("missing process %d: %v, want os.ErrNotExist", missing, errs[2])
	}
}
