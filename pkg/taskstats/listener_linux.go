//go:build linux

package taskstats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Listener receives the final records of exiting tasks (TASKSTATS_CMD_ATTR_REGISTER_CPUMASK). It
// runs on its own netlink socket, because the kernel sends exit records as unsolicited messages
// to the registered port. Receive and Close may be called from different goroutines.
//
// It reads that socket with mdlayher/netlink rather than gnl's Command.Listen: the kernel stamps
// exit records with a per-CPU sequence number (prepare_reply uses taskstats_seqnum) and port id
// 0, and gnl treats only sequence-0 messages as unsolicited, so it would discard every record.
// The payloads are decoded with gnl.Unmarshal and the same declarations as the requests.
type Listener struct {
	nl      *netlink.Conn
	family  uint16
	cpus    string
	portid  uint32
	mu      sync.Mutex // serializes Receive
	pending []Exit
	// lostEarly is a drop that happened while registering, for the first Receive to report.
	lostEarly *DroppedError
	drops     uint64 // kernel drop count at the last report
	dropped   uint64 // records reported dropped so far
	closeMu   sync.Mutex
	closed    bool
}

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
		lc.ReceiveBuffer = 4 << 20
	}
	fi, err := c.conn.Family(ctx, family.Name)
	if err != nil {
		return nil, c.wrap("exit listener", err)
	}
	var netns int
	if c.netlink != nil {
		netns = c.netlink.NetNS
	}
	nl, err := netlink.Dial(unix.NETLINK_GENERIC, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("taskstats: exit listener socket: %w", err)
	}
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	if raw, err := nl.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, lc.ReceiveBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, lc.ReceiveBuffer)
			}
		})
	}
	l := &Listener{nl: nl, family: fi.ID, cpus: lc.CPUs, portid: nl.PID()}
	l.drops, _ = netlinkDrops(l.portid)
	if err := l.register(ctx); err != nil {
		_ = nl.Close()
		return nil, err
	}
	return l, nil
}

// CPUs is the CPU list the listener is registered for.
func (l *Listener) CPUs() string { return l.cpus }

// Dropped is how many records the kernel reported dropped so far (see [DroppedError]).
func (l *Listener) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

func (l *Listener) request(attr uint16, flags netlink.HeaderFlags) (netlink.Message, error) {
	data, err := gnl.Marshal(&getRequest{Register: l.cpus})
	if attr == attrDeregister {
		data, err = gnl.Marshal(&getRequest{Deregister: l.cpus})
	}
	if err != nil {
		return netlink.Message{}, err
	}
	m := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(l.family), Flags: netlink.Request | flags},
		Data:   append([]byte{cmdGet, family.Version, 0, 0}, data...),
	}
	return l.nl.Send(m)
}

// register sends REGISTER_CPUMASK and waits for its acknowledgement, keeping the exit records
// that arrive before it.
func (l *Listener) register(ctx context.Context) error {
	req, err := l.request(attrRegister, netlink.Acknowledge)
	if err != nil {
		return fmt.Errorf("taskstats: register exit listener: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = l.nl.SetReadDeadline(deadline)
	defer func() { _ = l.nl.SetReadDeadline(time.Time{}) }()
	for {
		msgs, err := l.nl.Receive()
		if err != nil {
			switch {
			case errors.Is(err, syscall.ENOBUFS):
				// Reported by the first Receive.
				d := l.noteDrops(err)
				if l.lostEarly != nil {
					d.Records += l.lostEarly.Records
				}
				l.lostEarly = d
				continue
			case errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ERANGE):
				return fmt.Errorf("taskstats: register exit listener: the kernel refused CPU list %q (it takes possible CPUs only, and listeners only from the initial user and PID namespaces): %w", l.cpus, err)
			case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
				return fmt.Errorf("taskstats: register exit listener: %w (%w)", ErrPermission, err)
			}
			return fmt.Errorf("taskstats: register exit listener: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error {
				if m.Header.Sequence == req.Header.Sequence {
					return nil
				}
				continue
			}
			l.queue(m)
		}
	}
}

// queue decodes an exit record; messages that are not are dropped.
func (l *Listener) queue(m netlink.Message) {
	if uint16(m.Header.Type) != l.family || len(m.Data) < 4 || m.Data[0] != cmdNew {
		return
	}
	var rep reply
	if err := gnl.Unmarshal(m.Data[4:], &rep); err != nil || !rep.Seen.Has(4) {
		return
	}
	e := Exit{PID: rep.AggrPID.PID, Task: rep.AggrPID.Stats}
	if rep.Seen.Has(5) {
		g := rep.AggrTGID.Stats
		e.TGID, e.Group = rep.AggrTGID.TGID, &g
	}
	l.pending = append(l.pending, e)
}

// noteDrops turns a socket overflow into a count of lost records.
func (l *Listener) noteDrops(err error) *DroppedError {
	de := &DroppedError{Err: err}
	if n, ok := netlinkDrops(l.portid); ok && n >= l.drops {
		de.Records = n - l.drops
		l.drops = n
	}
	l.dropped += de.Records
	return de
}

// Receive returns the next exit record, waiting until one arrives, ctx is done or the listener
// is closed. When the kernel dropped records because the receive buffer was full it returns a
// [*DroppedError] (matching [ErrDropped] and syscall.ENOBUFS) and the listener goes on: call
// Receive again. After Close it returns an error matching net.ErrClosed.
func (l *Listener) Receive(ctx context.Context) (*Exit, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.lostEarly; d != nil {
		l.lostEarly = nil
		return nil, d
	}
	for len(l.pending) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = l.nl.SetReadDeadline(time.Unix(1, 0)) // interrupts the blocked read
			close(fired)
		})
		msgs, err := l.nl.Receive()
		if !stop() {
			<-fired // the interruption is done: undo it for the next call
			_ = l.nl.SetReadDeadline(time.Time{})
		}
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				return nil, l.noteDrops(err)
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			l.closeMu.Lock()
			closed := l.closed
			l.closeMu.Unlock()
			if closed {
				return nil, fmt.Errorf("taskstats: exit listener: %w", net.ErrClosed)
			}
			return nil, fmt.Errorf("taskstats: exit listener: %w", err)
		}
		for _, m := range msgs {
			l.queue(m)
		}
	}
	e := l.pending[0]
	l.pending = l.pending[1:]
	return &e, nil
}

// Close deregisters the listener and closes its socket; a blocked Receive returns.
func (l *Listener) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	_, derr := l.request(attrDeregister, 0)
	err := l.nl.Close()
	if derr != nil && !errors.Is(derr, os.ErrClosed) {
		return fmt.Errorf("taskstats: deregister exit listener: %w", derr)
	}
	return err
}
