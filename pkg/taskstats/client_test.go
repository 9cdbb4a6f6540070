package taskstats

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// fakeTask is a task the fake TASKSTATS kernel knows: its payload for PID and TGID requests.
type fakeTask struct {
	thread     []byte // struct taskstats for a PID request
	group      []byte // for a TGID request (leaders only)
	errno      syscall.Errno
	noTGIDAggr bool // answer a TGID request with AGGR_PID (a misbehaving kernel)
}

// fakeKernel serves TASKSTATS GET from a table, with NULL padding at every level as the kernel
// may send it.
func fakeKernel(t *testing.T, tasks map[uint32]*fakeTask) *gnltest.Kernel {
	k := &gnltest.Kernel{}
	k.Register(&gnltest.Family{Name: "TASKSTATS", Version: 1, MaxAttr: 4, Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		var r getRequest
		if err := gnl.Unmarshal(req.Attrs, &r); err != nil {
			return nil, syscall.EINVAL
		}
		if req.Cmd != cmdGet || (r.PID == 0) == (r.TGID == 0) {
			return nil, syscall.EINVAL
		}
		id, outer, inner := r.PID, uint16(4), uint16(1)
		if r.TGID != 0 {
			id, outer, inner = r.TGID, 5, 2
		}
		task := tasks[id]
		if task == nil {
			return nil, syscall.ESRCH
		}
		if task.errno != 0 {
			return nil, task.errno
		}
		payload := task.thread
		if r.TGID != 0 {
			payload = task.group
			if task.noTGIDAggr {
				outer, inner = 4, 1
			}
		}
		if payload == nil {
			return nil, syscall.ESRCH // no such thread (or not a group leader)
		}
		attrs := bytes.Join([][]byte{nla(null), nla(outer|gnl.FlagNested, nla(inner, u32b(id)), nla(null), nla(3, payload)), nla(null)}, nil)
		return []gnltest.Message{{Cmd: cmdNew, Attrs: attrs}}, nil
	}})
	return k
}

// fakeProc makes a procfs with <pid>/task/<tid> directories.
func fakeProc(t *testing.T, threads map[int][]int) string {
	root := t.TempDir()
	for pid, tids := range threads {
		for _, tid := range tids {
			if err := os.MkdirAll(filepath.Join(root, fmt.Sprint(pid), "task", fmt.Sprint(tid)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// payload returns a struct taskstats of version v with the given fields set.
func payload(v int, set func(put func(name string, val uint64))) []byte {
	fs := headerFields(v)
	b := make([]byte, structSize(fs))
	binary.NativeEndian.PutUint16(b, uint16(v))
	set(func(name string, val uint64) {
		for _, f := range fs {
			if f.name != name {
				continue
			}
			switch f.size {
			case 4:
				binary.NativeEndian.PutUint32(b[f.off:], uint32(val))
			case 8:
				binary.NativeEndian.PutUint64(b[f.off:], val)
			default:
				panic(name)
			}
			return
		}
		panic("no member " + name)
	})
	return b
}

func TestClientThreadAndGroupOnFakeKernel(t *testing.T) {
	for _, v := range []int{8, 14, 15, 16, 17} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			thread, want := synthetic(v)
			k := fakeKernel(t, map[uint32]*fakeTask{42: {thread: thread, group: thread}})
			c := NewClient(k.Dial(nil), "")
			defer c.Close()
			ctx := context.Background()
			got, err := c.Thread(ctx, 42)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("Thread (-want +got):\n%s", diff)
			}
			if got, err = c.ThreadGroup(ctx, 42); err != nil || !cmp.Equal(&want, got) {
				t.Errorf("ThreadGroup: %v, diff %s", err, cmp.Diff(&want, got))
			}
		})
	}
}

func TestClientErrorsOnFakeKernel(t *testing.T) {
	good, _ := synthetic(16)
	k := fakeKernel(t, map[uint32]*fakeTask{
		7: {errno: syscall.EPERM},
		8: {thread: good[:100]},
		9: {thread: good, group: good, noTGIDAggr: true},
	})
	c := NewClient(k.Dial(&gnl.Config{Timeout: 5 * time.Second}), "")
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Thread(ctx, 1); !errors.Is(err, os.ErrNotExist) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("missing thread: %v, want os.ErrNotExist and ESRCH", err)
	}
	if _, err := c.Thread(ctx, 7); !errors.Is(err, ErrPermission) || !errors.Is(err, os.ErrPermission) {
		t.Errorf("EPERM: %v, want ErrPermission", err)
	}
	if _, err := c.Thread(ctx, 8); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated struct: %v, want ErrTruncated", err)
	}
	if _, err := c.ThreadGroup(ctx, 9); !errors.Is(err, gnl.ErrUnexpectedReply) {
		t.Errorf("TGID answered with AGGR_PID: %v, want gnl.ErrUnexpectedReply", err)
	}
	if _, err := c.Thread(ctx, -1); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("negative pid: %v, want os.ErrInvalid", err)
	}
	// The connection survives every one of them.
	if _, err := c.Thread(ctx, 9); err != nil {
		t.Errorf("after errors: %v", err)
	}

	// A kernel without the family.
	empty := NewClient((&gnltest.Kernel{}).Dial(nil), "")
	defer empty.Close()
	if _, err := empty.Thread(ctx, 1); !errors.Is(err, ErrUnavailable) || !errors.Is(err, gnl.ErrFamilyNotFound) {
		t.Errorf("no family: %v, want ErrUnavailable", err)
	}
}

// TestProcessComposition checks which fields of the composed record come from where, on a fake
// kernel and a fake procfs: a leader, a worker thread, a thread that exits between the listing
// and its request, and a recycled id now belonging to another process.
func TestProcessComposition(t *testing.T) {
	const v = 16
	group := payload(v, func(put func(string, uint64)) {
		put("cpu_count", 10)
		put("cpu_delay_total", 1000)
		put("blkio_count", 3)
		put("ac_utime", 500)
		put("ac_stime", 200)
		put("nvcsw", 40)
		put("nivcsw", 4)
		put("cpu_run_virtual_total", 700_000)
		put("ac_etime", 9_999_999) // summed over threads by the kernel; replaced by the leader's
		put("cpu_delay_max", 50)   // one thread's, by assignment
		put("cpu_delay_min", 20)
	})
	leader := payload(v, func(put func(string, uint64)) {
		put("ac_pid", 100)
		put("ac_tgid", 100)
		put("ac_ppid", 1)
		put("ac_uid", 1000)
		put("ac_etime", 5_000_000)
		put("ac_tgetime", 5_000_000)
		put("ac_btime64", 1_700_000_000)
		put("ac_minflt", 11)
		put("read_char", 1024)
		put("write_syscalls", 0)
		put("read_bytes", 4096)
		put("hiwater_rss", 2000)
		put("hiwater_vm", 9000)
		put("coremem", 5)
	})
	copy(leader[offsetOfName(v, "ac_comm"):], "server")
	worker := payload(v, func(put func(string, uint64)) {
		put("ac_pid", 101)
		put("ac_tgid", 100)
		put("ac_minflt", 22)
		put("ac_majflt", 1)
		put("read_char", 2048)
		put("write_char", 3072)
		put("write_bytes", 8192)
		put("cancelled_write_bytes", 1024)
		put("read_syscalls", 1024)
		put("hiwater_rss", 2100) // read a moment later: the largest wins
		put("hiwater_vm", 9000)
		put("coremem", 6)
		put("cpu_delay_max", 70)
		put("cpu_delay_min", 5)
	})
	stranger := payload(v, func(put func(string, uint64)) {
		put("ac_pid", 103)
		put("ac_tgid", 555)
		put("read_char", 1<<30)
	})
	k := fakeKernel(t, map[uint32]*fakeTask{
		100: {thread: leader, group: group},
		101: {thread: worker},
		103: {thread: stranger},
	})
	proc := fakeProc(t, map[int][]int{100: {100, 101, 102, 103}})
	c := NewClient(k.Dial(nil), proc)
	defer c.Close()
	got, err := c.Process(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	want := &Stats{
		Version: v,
		CPU:     Delay{Count: 10, Total: 1000, Max: 70, Min: 5}, BlkIO: Delay{Count: 3},
		UserTime: 500 * time.Microsecond, SystemTime: 200 * time.Microsecond, Nvcsw: 40, Nivcsw: 4,
		CPURunVirtualTotal: 700 * time.Microsecond,
		Comm:               "server", PID: 100, TGID: 100, PPID: 1, UID: 1000,
		Elapsed: 5 * time.Second, ThreadGroupElapsed: 5 * time.Second, BeginTime: time.Unix(1_700_000_000, 0),
		MinorFaults: 33, MajorFaults: 1, ReadChar: 3072, WriteChar: 3072, ReadBytes: 4096, WriteBytes: 8192,
		CancelledWriteBytes: 1024, ReadSyscalls: 1024, HiwaterRSSKiB: 2100, HiwaterVMKiB: 9000, CoreMem: 11,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("composed record (-want +got):\n%s", diff)
	}

	if _, err := c.Process(context.Background(), 200); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing process: %v, want os.ErrNotExist", err)
	}
	// A thread group whose leader's thread is gone (a zombie leader) has no identity to report.
	k2 := fakeKernel(t, map[uint32]*fakeTask{300: {group: group}, 301: {thread: worker}})
	c2 := NewClient(k2.Dial(nil), fakeProc(t, map[int][]int{300: {300, 301}}))
	defer c2.Close()
	if _, err := c2.Process(context.Background(), 300); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaderless group: %v, want os.ErrNotExist", err)
	}
}

func offsetOfName(v int, name string) int {
	for _, f := range headerFields(v) {
		if f.name == name {
			return f.off
		}
	}
	panic(name)
}

// TestProcessAloneSkipsListing: when the TGID reply's CPU count, run time and context switches
// equal the leader's, Process does not list the threads (the fake procfs has no entry for such
// a process, so listing would fail); otherwise it lists them and adds the others' replies.
func TestProcessAloneSkipsListing(t *testing.T) {
	const v = 16
	counters := func(count, run, nvcsw uint64) func(put func(string, uint64)) {
		return func(put func(string, uint64)) {
			put("cpu_count", count)
			put("cpu_run_virtual_total", run)
			put("nvcsw", nvcsw)
			put("nivcsw", 1)
		}
	}
	leader := func(pid uint64, count, run, nvcsw uint64) []byte {
		return payload(v, func(put func(string, uint64)) {
			counters(count, run, nvcsw)(put)
			put("ac_pid", pid)
			put("ac_tgid", pid)
			put("ac_minflt", 9)
			put("read_char", 2048)
		})
	}
	worker := func(pid, tid uint64) []byte {
		return payload(v, func(put func(string, uint64)) {
			counters(1, 10, 1)(put)
			put("ac_pid", tid)
			put("ac_tgid", pid)
			put("ac_minflt", 4)
		})
	}
	k := fakeKernel(t, map[uint32]*fakeTask{
		// Alone: the group's counters are the leader's.
		400: {thread: leader(400, 5, 7000, 3), group: payload(v, counters(5, 7000, 3))},
		// Another thread has run: one more timeslice in the group.
		500: {thread: leader(500, 5, 7000, 3), group: payload(v, counters(6, 7010, 4))},
		501: {thread: worker(500, 501)},
		// Equal, but the leader's CPU count is 0: the kernel is not counting timeslices, so
		// equality proves nothing.
		600: {thread: leader(600, 0, 0, 0), group: payload(v, counters(0, 0, 0))},
		601: {thread: worker(600, 601)},
	})
	c := NewClient(k.Dial(nil), fakeProc(t, map[int][]int{500: {500, 501}, 600: {600, 601}}))
	defer c.Close()
	for _, tc := range []struct {
		pid    int
		minflt uint64
	}{{400, 9}, {500, 13}, {600, 13}} {
		s, err := c.Process(context.Background(), tc.pid)
		if err != nil {
			t.Errorf("process %d: %v", tc.pid, err)
			continue
		}
		if s.MinorFaults != tc.minflt || s.ReadChar != 2048 || s.PID != uint32(tc.pid) {
			t.Errorf("process %d: minor faults %d, read chars %d, pid %d; want %d, 2048, %d", tc.pid, s.MinorFaults, s.ReadChar, s.PID, tc.minflt, tc.pid)
		}
	}

	// The same, all at once, with a missing process and an invalid id among them.
	pids := []int{400, 777, 500, -1, 600, 400}
	out, errs := make([]Stats, len(pids)), make([]error, len(pids))
	if err := c.ProcessesInto(context.Background(), pids, out, errs); err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{9, 0, 13, 0, 13, 9} {
		switch pid := pids[i]; {
		case pid == 777 && !errors.Is(errs[i], os.ErrNotExist), pid == -1 && !errors.Is(errs[i], os.ErrInvalid):
			t.Errorf("ProcessesInto: process %d: %v, want an error", pid, errs[i])
		case pid > 0 && pid != 777 && (errs[i] != nil || out[i].MinorFaults != want || out[i].PID != uint32(pid)):
			t.Errorf("ProcessesInto: process %d: %v, minor faults %d, pid %d; want %d, %d", pid, errs[i], out[i].MinorFaults, out[i].PID, want, pid)
		}
	}
	if err := c.ProcessesInto(context.Background(), pids, out[:1], errs); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("ProcessesInto with too few records: %v, want os.ErrInvalid", err)
	}
}
