package taskstats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// ErrDropped is wrapped by the error [Listener.Receive] returns when the kernel dropped exit
// records because the listener's receive buffer was full (ENOBUFS). The listener keeps working;
// see [DroppedError] for how many were lost.
var ErrDropped = errors.New("taskstats: exit records dropped (receive buffer overflow)")

// ErrStopped is wrapped by every error [Listener.Receive] returns once the listener has ended
// (closed, or its connection failed): no record will come. Any other error from Receive is
// about one record (dropped or undecodable), and the listener goes on.
var ErrStopped = errors.New("taskstats: exit listener stopped")

// DroppedError reports exit records the kernel could not deliver to a [Listener].
type DroppedError struct {
	// Records is how many records were dropped since the previous report, as the kernel counted
	// them for the socket (its SO_MEMINFO drop counter), or 0 when the count is not known.
	Records uint64
	// Err is the connection's report: a [*gnl.LostError], which matches syscall.ENOBUFS.
	Err error
}

func (e *DroppedError) Error() string {
	if e.Records == 0 {
		return fmt.Sprintf("%v: %v", ErrDropped, e.Err)
	}
	return fmt.Sprintf("%v: %d records lost: %v", ErrDropped, e.Records, e.Err)
}

// Unwrap returns ErrDropped and the connection's error.
func (e *DroppedError) Unwrap() []error { return []error{ErrDropped, e.Err} }

// Exit is the final record of an exiting task, as the kernel sends it to exit listeners.
type Exit struct {
	// PID is the exiting thread's id and Task its final statistics.
	PID  uint32
	Task Stats
	// When the task was the last thread of a thread group that had more than one thread, TGID
	// and Group hold the group's final totals (its live and exited threads); Group is nil
	// otherwise (a single-threaded process's Task is its whole record).
	TGID  uint32
	Group *Stats
}

// ListenConfig configures [Client.Listen]. The zero value (or nil) is usable.
type ListenConfig struct {
	// CPUs is the CPU list to receive the exits of, in the kernel's list format ("0-3,8");
	// empty means every possible CPU (/sys/devices/system/cpu/possible).
	CPUs string
	// ReceiveBuffer sizes the socket's receive buffer in bytes (default 8 MiB; beyond
	// net.core.rmem_max, which the CAP_NET_ADMIN a listener needs allows). It holds the records
	// of a burst of exits that arrive faster than they are read: each takes about 1.3 KiB of
	// the kernel's accounting (measured: 200 exits, 270 KB), so the default holds several
	// thousand; a full buffer drops records (reported as [ErrDropped]).
	ReceiveBuffer int
}

// PossibleCPUs returns the kernel's list of possible CPUs, the widest mask a listener may use.
func PossibleCPUs() (string, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return "", fmt.Errorf("taskstats: possible CPUs: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Listener receives the final records of exiting tasks (TASKSTATS_CMD_ATTR_REGISTER_CPUMASK). The
// kernel sends them unasked to the port that registered, so a listener has a gnl connection of
// its own, read by a goroutine through gnl's Command.Listen and handed to [Listener.Receive] one
// record at a time: records wait in the socket's receive buffer, not in memory of ours. Receive
// and Close may be called from different goroutines.
type Listener struct {
	conn    *gnl.Conn
	cpus    string
	records chan received // unbuffered: the socket buffer is the queue
	stop    context.CancelFunc
	done    chan struct{} // closed when the reading goroutine has returned
	err     error         // why it returned, set before done is closed
	dropped atomic.Uint64
	closed  atomic.Bool
	closeMu sync.Mutex
}

type received struct {
	exit *Exit
	err  error
}

// ackAttempts bounds how often (DE)REGISTER_CPUMASK is sent when exit records filling the
// receive buffer made the kernel drop its acknowledgement (gnl reports that at once as
// gnl.ErrAckLost); both requests are idempotent.
const ackAttempts = 3

// Listen registers a listener for the exits of tasks on the CPUs of cfg. The kernel accepts
// listeners only from the initial user and PID namespaces (EINVAL otherwise: an agent needs
// hostPID) with CAP_NET_ADMIN. Close deregisters it.
func (c *Client) Listen(ctx context.Context, cfg *ListenConfig) (*Listener, error) {
	var lc ListenConfig
	if cfg != nil {
		lc = *cfg
	}
	if lc.CPUs == "" {
		cpus, err := PossibleCPUs()
		if err != nil {
			return nil, err
		}
		lc.CPUs = cpus
	}
	if lc.ReceiveBuffer <= 0 {
		lc.ReceiveBuffer = 8 << 20
	}
	var nc gnl.Config
	if c.netlink != nil {
		nc = *c.netlink // the network namespace and timeouts of the client
	}
	nc.ReceiveBuffer = lc.ReceiveBuffer
	nc.SendBuffer = 64 << 10 // it sends two small requests
	dial := c.dial
	if dial == nil {
		dial = gnl.Dial
	}
	conn, err := dial(&nc)
	if err != nil {
		return nil, fmt.Errorf("taskstats: exit listener: %w", err)
	}
	l := &Listener{conn: conn, cpus: lc.CPUs, records: make(chan received), done: make(chan struct{})}
	err = l.command(ctx, &getRequest{Register: lc.CPUs})
	if err != nil {
		_ = conn.Close()
		var ge *gnl.Error
		if errors.As(err, &ge) && (ge.Errno == syscall.EINVAL || ge.Errno == syscall.ERANGE) {
			return nil, fmt.Errorf("taskstats: register exit listener: the kernel refused CPU list %q (it takes possible CPUs only, and listeners only from the initial user and PID namespaces): %w", lc.CPUs, err)
		}
		return nil, c.wrap("register exit listener", err)
	}
	lctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	go l.run(lctx)
	return l, nil
}

// command sends a (DE)REGISTER_CPUMASK request and waits for its acknowledgement, sending it
// again when exit records overflowed the receive buffer and the acknowledgement was lost. The
// records lost in that overflow are reported by gnl to the listener's Command.Listen.
func (l *Listener) command(ctx context.Context, req *getRequest) error {
	for try := 1; ; try++ {
		err := register.Exec(ctx, l.conn, req)
		if !errors.Is(err, gnl.ErrAckLost) || try == ackAttempts {
			return err
		}
	}
}

// run reads the exit records until the listener is closed or the connection fails.
func (l *Listener) run(ctx context.Context) {
	defer close(l.done)
	hand := func(r received) error {
		select {
		case l.records <- r:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.err = exitRecords.Listen(ctx, l.conn, func(rep *reply, err error) error {
		if err == nil {
			e, err := exitRecord(rep)
			return hand(received{exit: e, err: err})
		}
		if !errors.Is(err, gnl.ErrMessagesLost) {
			return hand(received{err: fmt.Errorf("taskstats: exit listener: %w", err)})
		}
		d := &DroppedError{Err: err}
		if le := (*gnl.LostError)(nil); errors.As(err, &le) {
			d.Records = uint64(le.Count)
		}
		l.dropped.Add(d.Records)
		return hand(received{err: d})
	})
}

// exitRecord copies an exit record out of the reply that gnl reuses.
func exitRecord(rep *reply) (*Exit, error) {
	if !rep.Seen.Has(4) || !rep.AggrPID.Seen.Has(3) {
		return nil, fmt.Errorf("taskstats: exit listener: %w: exit record without the task's statistics", gnl.ErrMalformed)
	}
	e := &Exit{PID: rep.AggrPID.PID, Task: rep.AggrPID.Stats}
	if rep.Seen.Has(5) && rep.AggrTGID.Seen.Has(3) {
		g := rep.AggrTGID.Stats
		e.TGID, e.Group = rep.AggrTGID.TGID, &g
	}
	return e, nil
}

// CPUs is the CPU list the listener is registered for.
func (l *Listener) CPUs() string { return l.cpus }

// Dropped is how many records the kernel reported dropped so far (see [DroppedError]).
func (l *Listener) Dropped() uint64 { return l.dropped.Load() }

// Receive returns the next exit record, waiting until one arrives, ctx is done or the listener
// is closed. When the kernel dropped records because the receive buffer was full it returns a
// [*DroppedError] (matching [ErrDropped] and syscall.ENOBUFS) and the listener goes on: call
// Receive again; a record it cannot decode is an error too, and the listener goes on. Once the
// listener has ended it returns an error matching [ErrStopped] (and net.ErrClosed after Close).
func (l *Listener) Receive(ctx context.Context) (*Exit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case r := <-l.records:
		return r.exit, r.err
	case <-l.done:
		if l.closed.Load() {
			return nil, fmt.Errorf("%w: %w", ErrStopped, net.ErrClosed)
		}
		return nil, fmt.Errorf("%w: %w", ErrStopped, l.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close deregisters the listener and closes its connection; a blocked Receive returns. Should
// the deregistration fail, closing the socket still ends the listener: the kernel forgets a
// listener whose socket is gone when it next has a record for it.
func (l *Listener) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed.Swap(true) {
		return nil
	}
	l.stop()
	<-l.done
	derr := l.command(context.Background(), &getRequest{Deregister: l.cpus})
	cerr := l.conn.Close()
	if derr != nil {
		return fmt.Errorf("taskstats: deregister exit listener: %w", derr)
	}
	return cerr
}
