package taskstats

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
)

// TestListenerFakeKernel runs a listener against a fake kernel whose receive buffer holds a few
// records: exit records that overflow it while REGISTER_CPUMASK is answered (its acknowledgement
// is dropped, so the request is sent again), a record with the group's totals, a record without
// the task's statistics, and DEREGISTER_CPUMASK on Close.
func TestListenerFakeKernel(t *testing.T) {
	const v = 16
	record := func(pid uint32, group bool) []byte {
		task := payload(v, func(put func(string, uint64)) { put("ac_pid", uint64(pid)); put("ac_tgid", 100) })
		parts := [][]byte{nla(4|gnl.FlagNested, nla(1, u32b(pid)), nla(3, task))}
		if group {
			parts = append(parts, nla(5|gnl.FlagNested, nla(2, u32b(100)), nla(3, payload(v, func(put func(string, uint64)) { put("nvcsw", 7) }))))
		}
		return bytes.Join(parts, nil)
	}
	k := &gnltest.Kernel{ReceiveBuffer: 8 * (len(record(1, false)) + 16 + 4 + 512)}
	var (
		mu                      sync.Mutex
		registers, deregistered int
		famID                   uint16
	)
	famID = k.Register(&gnltest.Family{Name: "TASKSTATS", Version: 1, MaxAttr: 4, Handle: func(req gnltest.Request) ([]gnltest.Message, error) {
		var r getRequest
		if err := gnl.Unmarshal(req.Attrs, &r); err != nil {
			return nil, syscall.EINVAL
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Register == "0-1":
			registers++
			if registers == 1 { // a burst of exits fills the buffer before the acknowledgement
				for pid := uint32(1); pid <= 20; pid++ {
					if err := k.Send(req.PortID, famID, pid, gnltest.Message{Cmd: cmdNew, Attrs: record(pid, false)}); err != nil {
						t.Error(err)
					}
				}
			}
			return nil, nil
		case r.Deregister == "0-1":
			deregistered++
			return nil, nil
		}
		return nil, syscall.EINVAL
	}})
	var port uint32
	c := NewClient(k.Dial(nil), "")
	c.dial = func(*gnl.Config) (*gnl.Conn, error) {
		conn := k.Dial(nil)
		port = conn.PortID()
		return conn, nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := c.Listen(ctx, &ListenConfig{CPUs: "0-1"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if registers < 2 {
		t.Errorf("REGISTER_CPUMASK sent %d times: want it sent again after its acknowledgement was dropped", registers)
	}
	mu.Unlock()

	// The overflow while registering comes first, then the records the buffer held, in order.
	if _, err := l.Receive(ctx); !errors.Is(err, ErrDropped) || !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("first Receive: %v, want the drop while registering", err)
	}
	var last uint32
	for got := 0; got < 3; got++ {
		e, err := l.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.PID <= last || e.Task.PID != e.PID || e.Group != nil {
			t.Errorf("record %+v after PID %d", e, last)
		}
		last = e.PID
	}
	// Drain what the buffer held, then a group's last thread, then a record without stats.
	for {
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := l.Receive(rctx)
		rcancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatal(err)
		}
	}
	if err := k.Send(port, famID, 99, gnltest.Message{Cmd: cmdNew, Attrs: record(101, true)}); err != nil {
		t.Fatal(err)
	}
	if e, err := l.Receive(ctx); err != nil || e.PID != 101 || e.Group == nil || e.TGID != 100 || e.Group.Nvcsw != 7 {
		t.Errorf("group record: %+v, %v; want PID 101 with group 100's totals", e, err)
	}
	if err := k.Send(port, famID, 100, gnltest.Message{Cmd: cmdNew, Attrs: nla(5|gnl.FlagNested, nla(2, u32b(100)))}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Receive(ctx); !errors.Is(err, gnl.ErrMalformed) {
		t.Errorf("record without the task's statistics: %v, want gnl.ErrMalformed", err)
	}
	if err := k.Send(port, famID, 101, gnltest.Message{Cmd: cmdNew, Attrs: record(102, false)}); err != nil {
		t.Fatal(err)
	}
	if e, err := l.Receive(ctx); err != nil || e.PID != 102 {
		t.Errorf("after the malformed record: %+v, %v; want PID 102", e, err)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if deregistered != 1 {
		t.Errorf("DEREGISTER_CPUMASK sent %d times, want 1", deregistered)
	}
	mu.Unlock()
	if _, err := l.Receive(ctx); !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrStopped) {
		t.Errorf("Receive after Close: %v, want net.ErrClosed and ErrStopped", err)
	}
}
