package gnl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"syscall"
	"unsafe"
)

// ErrMessagesLost: the kernel dropped messages for this socket because its receive buffer was
// full (ENOBUFS). A listener gets it, as a [*LostError], in place of the records it will never see.
var ErrMessagesLost = errors.New("messages lost")

// LostError reports messages the kernel dropped. It matches [ErrMessagesLost] and
// syscall.ENOBUFS.
type LostError struct {
	// Count is how many messages the kernel dropped since the last report, from the socket's
	// drop counter (SO_MEMINFO); 0 when the transport cannot tell.
	Count uint32
}

// Error reads "N messages lost (no buffer space available)": a cause, which Listen prefixes
// with "gnl:" and the command it listens for.
func (e *LostError) Error() string {
	if e.Count == 0 {
		return fmt.Sprintf("%v (%v)", ErrMessagesLost, syscall.ENOBUFS)
	}
	return fmt.Sprintf("%d %v (%v)", e.Count, ErrMessagesLost, syscall.ENOBUFS)
}

// Is makes errors.Is(err, ErrMessagesLost) and errors.Is(err, syscall.ENOBUFS) true.
func (e *LostError) Is(target error) bool {
	return target == ErrMessagesLost || target == syscall.ENOBUFS //nolint:errorlint // sentinel identity
}

// dropCounter is a transport that knows how many messages the kernel dropped for it.
type dropCounter interface {
	Drops() (uint32, bool)
}

// drops returns the transport's drop counter, 0 when it has none.
func (c *Conn) drops() uint32 {
	if d, ok := c.t.(dropCounter); ok {
		if n, ok := d.Drops(); ok {
			return n
		}
	}
	return 0
}

// maxStash bounds how many unsolicited messages a connection keeps while it waits for a reply.
const maxStash = 4096

// isUnsolicited tells messages the kernel sends unasked: multicast notifications and taskstats
// exit records carry port id 0 (exit records a per-CPU sequence number, notifications usually
// sequence 0); replies, acknowledgements and dumps carry the requester's port id, so a port-0
// message is never taken for a reply even when its sequence number matches.
func isUnsolicited(m message) bool { return m.typ >= 0x10 && (m.pid == 0 || m.seq == 0) }

// stashRest stashes the messages left in a read when an exchange ends before them: a read
// returns several datagrams, and unsolicited messages among them must reach the next Listen.
func (c *Conn) stashRest(b []byte) {
	for len(b) > 0 {
		m, rest, err := nextMessage(b)
		if err != nil {
			return
		}
		c.stash(m)
		b = rest
	}
}

// stash keeps a copy of an unsolicited message that arrived during a request, for the next
// Listen; anything else that is not the pending request's (a stale reply) is dropped.
func (c *Conn) stash(m message) {
	if !isUnsolicited(m) {
		return
	}
	if len(c.unsolicited) >= maxStash {
		c.stashLost = true
		return
	}
	m.data = slices.Clone(m.data)
	c.unsolicited = append(c.unsolicited, m)
}

// groupJoiner is a transport that can join multicast groups.
type groupJoiner interface {
	JoinGroup(group uint32) error
	LeaveGroup(group uint32) error
}

// JoinGroup subscribes the connection to a multicast group of a family, by name; read the
// notifications with [Command.Listen].
func (c *Conn) JoinGroup(ctx context.Context, family, group string) error {
	return c.group(ctx, family, group, true)
}

// LeaveGroup undoes JoinGroup.
func (c *Conn) LeaveGroup(ctx context.Context, family, group string) error {
	return c.group(ctx, family, group, false)
}

func (c *Conn) group(ctx context.Context, family, group string, join bool) error {
	fi, err := c.Family(ctx, family)
	if err != nil {
		return err
	}
	gj, ok := c.t.(groupJoiner)
	if !ok {
		return fmt.Errorf("gnl: group %s %s: this transport has no multicast groups", family, group)
	}
	for _, g := range fi.Groups {
		if g.Name == group {
			if join {
				err = gj.JoinGroup(g.ID)
			} else {
				err = gj.LeaveGroup(g.ID)
			}
			if err != nil {
				return fmt.Errorf("gnl: group %s %s: %w", family, group, err)
			}
			return nil
		}
	}
	return fmt.Errorf("gnl: group %s %s: no such multicast group (%w)", family, group, os.ErrNotExist)
}

// Listen reads the messages the kernel sends unasked on this connection (notifications of
// joined multicast groups, taskstats exit records after REGISTER_CPUMASK), decodes those of the
// command's family that carry its Reply command (any command when Reply is 0) into a *Rep, reused
// between calls, and calls fn(rep, nil) for each. When the kernel reports that it dropped
// messages (ENOBUFS), fn is called with a nil rep and an error wrapping [ErrMessagesLost], and
// listening goes on: losses are reported, never silent. Listen returns when ctx ends (with
// ctx's error) or when fn returns an error (that error). It holds the connection for its whole
// duration: use a connection of its own.
func (c Command[Req, Rep]) Listen(ctx context.Context, conn *Conn, fn func(rep *Rep, lost error) error) error {
	p, err := planFor(reflect.TypeFor[Rep]())
	if err != nil {
		return err
	}
	x, err := conn.begin(ctx)
	if err != nil {
		return c.listenErr(err)
	}
	defer x.end()
	id, err := conn.familyID(x, c.Family)
	if err != nil {
		return err
	}
	l := listener[Req, Rep]{cmd: c, conn: conn, id: id, plan: p, fn: fn}
	if err := l.stashed(); err != nil {
		return err
	}
	r := x.reader(false) // an overflow is reported to fn, not recovered from
	defer r.stop()       // a read takes several datagrams: keep the rest for the next Listen
	for {
		m, err := r.next()
		switch {
		case err == nil:
			err = l.deliver(m)
		case errors.Is(err, syscall.ENOBUFS):
			err = l.lost()
		case ctx.Err() != nil:
			return c.listenErr(ctx.Err())
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // the connection's timeout bounds replies, not how long a listener waits
		case errors.Is(err, ErrMalformed):
			err = fn(nil, c.listenErr(err)) // the rest of that read is dropped; listening goes on
		default:
			return c.listenErr(err)
		}
		if err != nil {
			return err
		}
	}
}

// listenErr names the command in an error of its listener.
func (c Command[Req, Rep]) listenErr(err error) error {
	return requestError(c.Family.Name, c.Name, fmt.Errorf("listen: %w", err))
}

// listener delivers the unsolicited messages of one Listen call.
type listener[Req, Rep any] struct {
	cmd  Command[Req, Rep]
	conn *Conn
	id   uint16
	plan *plan
	rep  Rep
	fn   func(rep *Rep, lost error) error
}

// stashed delivers what arrived while requests waited for their answers, and the losses then.
func (l *listener[Req, Rep]) stashed() error {
	conn := l.conn
	if conn.stashLost {
		conn.stashLost = false
		if err := l.lost(); err != nil {
			return err
		}
	}
	for len(conn.unsolicited) > 0 {
		m := conn.unsolicited[0]
		conn.unsolicited = conn.unsolicited[1:]
		if err := l.deliver(m); err != nil {
			return err
		}
	}
	conn.unsolicited = nil
	return nil
}

// deliver decodes an unsolicited message of the command's family and reply command for fn;
// other messages are not the listener's.
func (l *listener[Req, Rep]) deliver(m message) error {
	if !isUnsolicited(m) {
		return nil
	}
	attrs, err := replyAttrs(m, l.id, l.cmd.Reply)
	if err != nil {
		return nil
	}
	if err := decodeSet(attrs, l.plan, unsafe.Pointer(&l.rep)); err != nil {
		return l.fn(nil, l.cmd.listenErr(fmt.Errorf("decode: %w", err)))
	}
	return l.fn(&l.rep, nil)
}

// lost reports the messages the kernel dropped since the last report.
func (l *listener[Req, Rep]) lost() error {
	n := l.conn.drops()
	err := &LostError{Count: n - l.conn.reportedDrops}
	l.conn.reportedDrops = n
	return l.fn(nil, l.cmd.listenErr(err))
}
