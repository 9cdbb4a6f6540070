package taskstats

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/taskstats/internal/workload"
)

func listen(t *testing.T, c *Client, cfg *ListenConfig) *Listener {
	t.Helper()
	l, err := c.Listen(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestExitListener(t *testing.T) {
	c := kernelClient(t)
	l := listen(t, c, nil)
	ctx := testContext(t)

	// A multi-threaded process: one record per thread, and the group's totals with the last one.
	const burn, write, threads = 200 * time.Millisecond, 512 << 10, 2
	p := startWorkload(t, workload.Spec{Threads: threads, Burn: burn, WriteBytes: write, ExitCode: 3})
	if err := p.Finish(); err == nil {
		t.Fatal("workload exited 0, want 3")
	}
	var (
		tasks []Exit
		group *Exit
	)
	for group == nil {
		e, err := l.Receive(ctx)
		if err != nil {
			t.Fatalf("after %d records of the workload: %v", len(tasks), err)
		}
		if e.Task.TGID != uint32(p.PID) {
			continue // another process on this machine
		}
		tasks = append(tasks, *e)
		if e.Group != nil {
			group = e
		}
	}
	g := group.Group
	t.Logf("%d thread records; group %d: %+v", len(tasks), group.TGID, *g)
	if group.TGID != uint32(p.PID) {
		t.Errorf("group record for TGID %d, want %d", group.TGID, p.PID)
	}
	if g.CPURunVirtualTotal < threads*burn || g.UserTime+g.SystemTime < threads*burn*8/10 {
		t.Errorf("group CPU time %v (sampled %v), want >= %v", g.CPURunVirtualTotal, g.UserTime+g.SystemTime, threads*burn)
	}
	if g.Nvcsw == 0 || g.CPU.Count == 0 {
		t.Errorf("group context switches %d, CPU count %d: want some", g.Nvcsw, g.CPU.Count)
	}
	var (
		wchar  uint64
		leader *Exit
	)
	for i := range tasks {
		wchar += tasks[i].Task.WriteChar
		if tasks[i].PID == uint32(p.PID) {
			leader = &tasks[i]
		}
	}
	if wchar < threads*write {
		t.Errorf("the threads' records add up to %d bytes written, want >= %d", wchar, threads*write)
	}
	if leader == nil {
		t.Fatalf("no record for the leader thread %d among %d", p.PID, len(tasks))
	}
	if code := leader.Task.ExitCode; code>>8 != 3 {
		t.Errorf("leader exit code %#x, want exit status 3 (0x300)", code)
	}
	if leader.Task.Comm == "" || leader.Task.PPID == 0 {
		t.Errorf("leader record lacks identity: %+v", leader.Task)
	}

	// A single-threaded process: its one record, no group record.
	cmd := exec.Command("sh", "-c", "exit 7")
	if err := cmd.Run(); err == nil {
		t.Fatal("sh exited 0")
	}
	for {
		e, err := l.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.PID != uint32(cmd.Process.Pid) {
			continue
		}
		if e.Group != nil || e.Task.ExitCode != 7<<8 || e.Task.Comm != "sh" {
			t.Errorf("sh record: group %v, exit code %#x, comm %q; want no group, 0x700, sh", e.Group, e.Task.ExitCode, e.Task.Comm)
		}
		break
	}
	if l.Dropped() != 0 {
		t.Logf("%d records dropped on a busy machine", l.Dropped())
	}
}

func TestExitListenerReportsDrops(t *testing.T) {
	c := kernelClient(t)
	// A 16 KiB receive buffer holds a handful of records: 50 exits that are not read overflow it.
	l := listen(t, c, &ListenConfig{ReceiveBuffer: 16 << 10})
	ctx := testContext(t)
	for range 50 {
		if err := exec.Command("true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	var drop *DroppedError
	for got := 0; drop == nil; got++ {
		_, err := l.Receive(ctx)
		switch {
		case errors.As(err, &drop):
		case err != nil:
			t.Fatal(err)
		case got > 100:
			t.Fatal("50 exits into a tiny buffer and no drop reported")
		}
	}
	if !errors.Is(drop, ErrDropped) || !errors.Is(drop, syscall.ENOBUFS) || drop.Records == 0 {
		t.Errorf("drop report %v (records %d): want ErrDropped, ENOBUFS and a count", drop, drop.Records)
	}
	if l.Dropped() < drop.Records {
		t.Errorf("Dropped() = %d, want >= %d", l.Dropped(), drop.Records)
	}
	t.Logf("%v", drop)
	// The listener goes on: a later exit arrives once the queue has been read (on a busy machine
	// other exits may overflow the small buffer again, so try a few times).
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("no exit record arrived after the drop")
		}
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		found := false
		for !found {
			e, err := l.Receive(rctx)
			if errors.Is(err, ErrDropped) {
				continue
			}
			if err != nil {
				break
			}
			found = e.PID == uint32(cmd.Process.Pid)
		}
		cancel()
		if found {
			break
		}
	}
}

func TestExitListenerStops(t *testing.T) {
	c := kernelClient(t)
	// Cancelling the context stops a blocked Receive; the listener stays usable.
	l := listen(t, c, &ListenConfig{CPUs: "0"})
	if l.CPUs() != "0" {
		t.Errorf("CPUs() = %q", l.CPUs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	for {
		_, err := l.Receive(ctx) // CPU 0 may see exits; read until the deadline
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Receive returned %v after its deadline", d)
	}
	// Close from another goroutine ends a blocked Receive.
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := l.Receive(context.Background()); err != nil && !errors.Is(err, ErrDropped) {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive still blocked 10 s after Close")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A mask the kernel cannot accept is an error, not a silent listener.
	if _, err := c.Listen(testContext(t), &ListenConfig{CPUs: "100000"}); !errors.Is(err, syscall.ERANGE) && !errors.Is(err, syscall.EINVAL) {
		t.Errorf("listener on CPU 100000: %v, want ERANGE or EINVAL", err)
	} else {
		t.Log(err)
	}
}
