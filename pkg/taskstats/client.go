package taskstats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// ErrPermission is wrapped by errors of requests the kernel refused because the caller lacks
// CAP_NET_ADMIN; it matches os.ErrPermission too.
var ErrPermission = fmt.Errorf("taskstats needs CAP_NET_ADMIN in the initial user namespace: %w", os.ErrPermission)

// ErrUnavailable is wrapped when the kernel has no TASKSTATS family (built without
// CONFIG_TASKSTATS, or the socket is in a network namespace other than the host's: the family is
// not netnsok).
var ErrUnavailable = errors.New("taskstats: the kernel has no TASKSTATS generic netlink family here (CONFIG_TASKSTATS, host network namespace)")

// Config configures [Dial]. The zero value (or nil) is usable.
type Config struct {
	// Netlink configures the generic netlink connection (timeouts, buffers, network namespace:
	// TASKSTATS is only visible from the host's).
	Netlink *gnl.Config
	// Proc is where the procfs of the PID namespace the caller sees is mounted (default /proc);
	// [Client.Process] lists a process's threads there.
	Proc string
}

// Client asks the kernel for task statistics. Its methods are safe for concurrent use; requests
// on one Client are serialized (open several for parallelism).
type Client struct {
	conn    *gnl.Conn
	proc    string
	netlink *gnl.Config
	// dial opens an exit listener's connection (gnl.Dial; a fake kernel's in tests).
	dial func(*gnl.Config) (*gnl.Conn, error)
}

// Dial opens a TASKSTATS client.
func Dial(cfg *Config) (*Client, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Proc == "" {
		c.Proc = "/proc"
	}
	conn, err := gnl.Dial(c.Netlink)
	if err != nil {
		return nil, fmt.Errorf("taskstats: %w", err)
	}
	return &Client{conn: conn, proc: c.Proc, netlink: c.Netlink}, nil
}

// NewClient makes a Client on an existing gnl connection (such as one to a gnltest kernel).
// proc is the procfs mount ("" for /proc).
func NewClient(conn *gnl.Conn, proc string) *Client {
	if proc == "" {
		proc = "/proc"
	}
	return &Client{conn: conn, proc: proc}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Thread returns the statistics of one thread (TASKSTATS_CMD_ATTR_PID), tid as the caller's PID
// namespace numbers it. A thread that does not exist is an error matching os.ErrNotExist.
func (c *Client) Thread(ctx context.Context, tid int) (*Stats, error) {
	s := new(Stats)
	if err := c.ThreadInto(ctx, tid, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ThreadInto is [Client.Thread] decoding into s, for callers that sample often.
func (c *Client) ThreadInto(ctx context.Context, tid int, s *Stats) error {
	return c.query(ctx, "PID", tid, &getRequest{PID: uint32(tid)}, s)
}

// ThreadGroup returns the kernel's statistics of a thread group (TASKSTATS_CMD_ATTR_TGID): the
// delays, CPU times and context switches of its live threads plus those its exited threads left
// behind. On recent kernels its I/O counters and memory high-water marks are zero, and its
// identity fields (comm, uid, pid, ...) zero, and the delay maxima and minima are one thread's
// (the kernel assigns them thread after thread); use [Client.Process] for a record that matches
// /proc/<pid>.
func (c *Client) ThreadGroup(ctx context.Context, tgid int) (*Stats, error) {
	s := new(Stats)
	if err := c.ThreadGroupInto(ctx, tgid, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ThreadGroupInto is [Client.ThreadGroup] decoding into s.
func (c *Client) ThreadGroupInto(ctx context.Context, tgid int, s *Stats) error {
	return c.query(ctx, "TGID", tgid, &getRequest{TGID: uint32(tgid)}, s)
}

func (c *Client) query(ctx context.Context, what string, id int, req *getRequest, s *Stats) error {
	if id <= 0 || id > 1<<31-1 {
		return fmt.Errorf("taskstats: %s %d: %w", what, id, os.ErrInvalid)
	}
	rep := replies.Get().(*reply)
	defer replies.Put(rep)
	if err := get.Do(ctx, c.conn, req, rep); err != nil {
		return c.wrap(fmt.Sprintf("%s %d", what, id), err)
	}
	agg, attr := &rep.AggrPID, uint16(4)
	if req.TGID != 0 {
		agg, attr = &rep.AggrTGID, 5
	}
	if !rep.Seen.Has(attr) || !agg.Seen.Has(3) {
		return fmt.Errorf("taskstats: %s %d: %w: reply without the aggregate statistics", what, id, gnl.ErrUnexpectedReply)
	}
	*s = agg.Stats
	return nil
}

// replies are reused between requests: a reply holds two struct taskstats (1.7 KiB), and gnl
// decodes into a zeroed value each time.
var replies = sync.Pool{New: func() any { return new(reply) }}

// wrap gives kernel errors their meaning for this family: ESRCH (no such task) matches
// os.ErrNotExist, EPERM names the capability, a missing family says so.
func (c *Client) wrap(what string, err error) error {
	var ge *gnl.Error
	switch {
	case errors.As(err, &ge) && ge.Errno == syscall.ESRCH:
		return fmt.Errorf("taskstats: %s: %w", what, noSuchTaskError{err})
	case errors.As(err, &ge) && (ge.Errno == syscall.EPERM || ge.Errno == syscall.EACCES):
		return fmt.Errorf("taskstats: %s: %w (%w)", what, ErrPermission, err)
	case errors.Is(err, gnl.ErrFamilyNotFound):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("taskstats: %s: %w", what, err)
}

// noSuchTaskError is the kernel's ESRCH for a PID or TGID: it matches os.ErrNotExist.
type noSuchTaskError struct{ err error }

func (e noSuchTaskError) Error() string   { return "no such task (" + e.err.Error() + ")" }
func (e noSuchTaskError) Unwrap() []error { return []error{os.ErrNotExist, e.err} }
