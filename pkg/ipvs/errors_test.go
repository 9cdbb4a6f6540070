package ipvs

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/kubelvs/kubelvs/pkg/gnl/gnltest"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// TestApplyNotSent: when the batch cannot be sent at all (the context is cancelled, the
// connection is closed, the kernel has no IPVS), every operation's result says so; none reads
// as a success.
func TestApplyNotSent(t *testing.T) {
	ops := func() []Op {
		s := svc(lvs.TCP, "10.0.0.1", 80, "rr")
		return []Op{
			{Kind: AddService, Service: &s},
			{Kind: AddDestination, Service: &s, Destination: ptr(dst("10.1.0.1", 80, lvs.Masquerade, 1))},
			{Kind: DeleteService, Service: ptr(svc(lvs.TCP, "10.0.0.2", 80, ""))},
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		setup func(t *testing.T) (*Client, context.Context)
		cause error
	}{
		{"context cancelled", func(t *testing.T) (*Client, context.Context) {
			_, c := newTestClient(t)
			return c, cancelled
		}, context.Canceled},
		{"connection closed", func(t *testing.T) (*Client, context.Context) {
			_, k := newFake()
			conn := k.Dial(nil)
			_ = conn.Close()
			return NewWithConn(conn, nil), ctx(t)
		}, gnl.ErrClosed},
		{"no IPVS family", func(t *testing.T) (*Client, context.Context) {
			conn := new(gnltest.Kernel).Dial(nil)
			t.Cleanup(func() { _ = conn.Close() })
			return NewWithConn(conn, nil), ctx(t)
		}, ErrNotAvailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, cx := tc.setup(t)
			ops := ops()
			res, err := c.Apply(cx, ops)
			if err == nil {
				t.Errorf("Apply returned no error")
			}
			for i, r := range res {
				if r == nil {
					t.Errorf("op %d (%s): nil result for an operation never sent", i, &ops[i])
					continue
				}
				if !errors.Is(r, ErrNotSent) || !errors.Is(r, tc.cause) {
					t.Errorf("op %d (%s): %v, want ErrNotSent and %v", i, &ops[i], r, tc.cause)
				}
			}
		})
	}
}

// TestUpdateServiceENOENT: the kernel answers SET_SERVICE with ESRCH when the service is
// missing (before it looks at the scheduler) and with ENOENT when the scheduler or engine
// module is missing. If the service is gone when the client checks after an ENOENT (another
// program deleted it in between), the error says the service is not found, and keeps the
// kernel's errno either way.
func TestUpdateServiceENOENT(t *testing.T) {
	f, c := newTestClient(t)
	s := svc(lvs.TCP, "10.0.0.1", 80, "rr")
	if err := c.AddService(ctx(t), &s); err != nil {
		t.Fatal(err)
	}
	bad := s
	bad.Scheduler = "nope"
	err := c.UpdateService(ctx(t), &bad)
	if !errors.Is(err, ErrSchedulerNotFound) || !errors.Is(err, syscall.ENOENT) || errors.Is(err, ErrServiceNotFound) {
		t.Errorf("update to a missing scheduler: %v, want ErrSchedulerNotFound with ENOENT", err)
	}
	// Another program deletes the service right after the kernel refused the update.
	f.mu.Lock()
	f.after = func(req gnltest.Request) {
		if req.Cmd == hCmdSetService {
			f.mu.Lock()
			f.svcs, f.after = nil, nil
			f.mu.Unlock()
		}
	}
	f.mu.Unlock()
	err = c.UpdateService(ctx(t), &bad)
	if !errors.Is(err, ErrServiceNotFound) || !errors.Is(err, syscall.ENOENT) || errors.Is(err, ErrSchedulerNotFound) {
		t.Errorf("update of a service deleted meanwhile: %v, want ErrServiceNotFound with ENOENT", err)
	}
	if strings.Contains(err.Error(), "%!") {
		t.Errorf("malformed message %q", err)
	}
	// A service already there is reported before its scheduler is looked at (EEXIST first).
	if err := c.AddService(ctx(t), &s); err != nil {
		t.Fatal(err)
	}
	if err := c.AddService(ctx(t), &bad); !errors.Is(err, ErrServiceExists) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("add of an existing service with a missing scheduler: %v, want ErrServiceExists", err)
	}
}

// TestErrorMessages: each error reads once, "ipvs: OP OBJECT: CAUSE (ERRNO)", and still
// matches its sentinel and its errno.
func TestErrorMessages(t *testing.T) {
	_, c := newTestClient(t)
	s := svc(lvs.TCP, "10.0.0.1", 80, "rr")
	d := dst("10.1.0.1", 80, lvs.Masquerade, 1)
	if err := c.AddService(ctx(t), &s); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDestination(ctx(t), &s, &d); err != nil {
		t.Fatal(err)
	}
	missing := svc(lvs.TCP, "10.0.0.9", 80, "rr")
	other := dst("10.1.0.9", 80, lvs.Masquerade, 1)
	tests := []struct {
		do    func() error
		want  string
		is    error
		errno syscall.Errno
	}{
		{func() error { return c.AddService(ctx(t), &s) },
			"ipvs: add service TCP 10.0.0.1:80: service exists (file exists)", ErrServiceExists, syscall.EEXIST},
		{func() error { m := missing; m.Scheduler = "nope"; return c.AddService(ctx(t), &m) },
			"ipvs: add service TCP 10.0.0.9:80: scheduler or persistence engine not found (no such file or directory)", ErrSchedulerNotFound, syscall.ENOENT},
		{func() error { return c.UpdateService(ctx(t), &missing) },
			"ipvs: update service TCP 10.0.0.9:80: service not found (no such process)", ErrServiceNotFound, syscall.ESRCH},
		{func() error { return c.DeleteService(ctx(t), &missing) },
			"ipvs: delete service TCP 10.0.0.9:80: service not found (no such process)", ErrServiceNotFound, syscall.ESRCH},
		{func() error { _, err := c.Service(ctx(t), missing.ServiceKey); return err },
			"ipvs: get service TCP 10.0.0.9:80: service not found (no such process)", ErrServiceNotFound, syscall.ESRCH},
		{func() error { _, err := c.Destinations(ctx(t), missing.ServiceKey); return err },
			"ipvs: list destinations of TCP 10.0.0.9:80: service not found (no such process)", ErrServiceNotFound, syscall.ESRCH},
		{func() error { return c.AddDestination(ctx(t), &s, &d) },
			"ipvs: add destination 10.1.0.1:80 of TCP 10.0.0.1:80: destination exists (file exists)", ErrDestExists, syscall.EEXIST},
		{func() error { return c.DeleteDestination(ctx(t), &s, &other) },
			"ipvs: delete destination 10.1.0.9:80 of TCP 10.0.0.1:80: destination not found (no such file or directory)", ErrDestNotFound, syscall.ENOENT},
		{func() error { o := other; o.LowerThreshold = 5; return c.AddDestination(ctx(t), &s, &o) },
			"ipvs: add destination 10.1.0.9:80 of TCP 10.0.0.1:80: invalid value (numerical result out of range)", ErrInvalid, syscall.ERANGE},
		{func() error { o := other; o.Weight = 1 << 31; return c.AddDestination(ctx(t), &s, &o) },
			"ipvs: add destination 10.1.0.9:80 of TCP 10.0.0.1:80: invalid value: weight 2147483648 is above 2147483647", ErrInvalid, 0},
		{func() error { return c.StopDaemon(ctx(t), DaemonBackup) },
			"ipvs: stop sync daemon backup: sync daemon not running (no such process)", ErrDaemonNotRunning, syscall.ESRCH},
		{func() error { return c.StartDaemon(ctx(t), Daemon{State: DaemonMaster}) },
			`ipvs: start sync daemon master: invalid value: daemon interface ""`, ErrInvalid, 0},
	}
	for _, tc := range tests {
		err := tc.do()
		if err == nil {
			t.Errorf("%s: no error", tc.want)
			continue
		}
		if d := cmp.Diff(tc.want, err.Error()); d != "" {
			t.Errorf("message (-want +got):\n%s", d)
		}
		if !errors.Is(err, tc.is) || tc.errno != 0 && !errors.Is(err, tc.errno) {
			t.Errorf("%q does not match %v and errno %v", err, tc.is, tc.errno)
		}
	}
}

// TestOpError: the message of each shape of OpError, and what it matches.
func TestOpError(t *testing.T) {
	kernel := &gnl.Error{Family: "IPVS", Command: "NEW_SERVICE", Errno: syscall.EINVAL, Message: "Attribute failed policy validation"}
	tests := []struct {
		err  *OpError
		want string
		is   []error
	}{
		{&OpError{Op: AddService, Object: "TCP 10.0.0.1:80", Kind: ErrInvalid, Errno: syscall.EINVAL, Message: kernel.Message, Err: kernel},
			"ipvs: add service TCP 10.0.0.1:80: invalid value (invalid argument: Attribute failed policy validation)",
			[]error{ErrInvalid, syscall.EINVAL, kernel}},
		{&OpError{Op: Flush, Errno: syscall.EPERM, Err: &gnl.Error{Errno: syscall.EPERM}},
			"ipvs: flush: operation not permitted", []error{syscall.EPERM, os.ErrPermission}},
		{&OpError{Op: AddService, Object: "TCP 10.0.0.1:80", Kind: ErrNotSent, Err: context.Canceled},
			"ipvs: add service TCP 10.0.0.1:80: operation not sent: context canceled", []error{ErrNotSent, context.Canceled}},
		{&OpError{Op: GetInfo, Err: gnl.ErrClosed}, "ipvs: get info: connection closed", []error{gnl.ErrClosed}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, tc.err.Error()); d != "" {
			t.Errorf("message (-want +got):\n%s", d)
		}
		for _, target := range tc.is {
			if !errors.Is(tc.err, target) {
				t.Errorf("%q does not match %v", tc.err, target)
			}
		}
		for _, s := range []error{ErrServiceExists, ErrServiceNotFound, ErrDestExists, ErrDestNotFound, ErrSchedulerNotFound, ErrNotAvailable, syscall.ENOENT} {
			if !errors.Is(tc.err.Kind, s) && errors.Is(tc.err, s) {
				t.Errorf("%q also matches %v", tc.err, s)
			}
		}
	}
	// Every error of a client method is an *OpError.
	_, c := newTestClient(t)
	err := c.DeleteService(ctx(t), ptr(svc(lvs.TCP, "10.0.0.9", 80, "")))
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != DeleteService || oe.Object != "TCP 10.0.0.9:80" || oe.Errno != syscall.ESRCH || !errors.Is(oe.Kind, ErrServiceNotFound) {
		t.Errorf("DeleteService error %#v", err)
	}
}
