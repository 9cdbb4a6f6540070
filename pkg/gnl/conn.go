package gnl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config configures [Dial]. The zero value (or nil) is usable.
type Config struct {
	// NetNS is a file descriptor of a network namespace to open the socket in (as from
	// /var/run/netns/NAME or /proc/PID/ns/net); 0 means the calling thread's. IPVS tables are per
	// namespace; families that are not netnsok (TASKSTATS) are only visible from the host's.
	NetNS int
	// ReceiveBuffer and SendBuffer size the socket buffers in bytes (default 8 MiB each), with
	// SO_RCVBUFFORCE/SO_SNDBUFFORCE when the caller may exceed net.core.[rw]mem_max. They bound
	// how many pipelined requests are in flight at once.
	ReceiveBuffer int
	SendBuffer    int
	// Timeout bounds each wait for a reply when the context has no earlier deadline
	// (default 30 s), so that a lost reply never hangs a caller.
	Timeout time.Duration
	// Window is the maximum number of batched requests per sendmsg (default 1024); it is
	// lowered to what the socket buffers hold.
	Window int
	// MessageBuffer is the size in bytes of one datagram read (default 64 KiB): a datagram
	// larger than it is an error (ErrMalformed). The kernel sizes the skbs of dumps after the
	// largest read buffer it has seen (capped at 32 KiB, never below about a page), so a small
	// one (a page) makes many small dump replies and a large one few large ones. A read takes
	// up to readSlots datagrams at once, one per MessageBuffer-sized slot.
	MessageBuffer int
}

// maxReadSlots bounds how many datagrams one read takes; readBytes bounds the read buffer.
const (
	maxReadSlots = 64
	readBytes    = 1 << 20
)

// readSlots is how many datagrams of up to messageBuffer bytes one read takes at once.
func readSlots(messageBuffer int) int {
	return min(maxReadSlots, max(1, readBytes/messageBuffer))
}

func (c *Config) withDefaults() Config {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.ReceiveBuffer <= 0 {
		cfg.ReceiveBuffer = 8 << 20
	}
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = 8 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 1024
	}
	if cfg.MessageBuffer <= 0 {
		cfg.MessageBuffer = 64 << 10
	}
	// Slots of whole netlink alignment units, at least one netlink header each.
	cfg.MessageBuffer = max(align(cfg.MessageBuffer), 64)
	return cfg
}

// Conn is a generic netlink connection. Its methods are safe for concurrent use; requests on one
// Conn are serialized (open several Conns for parallelism).
type Conn struct {
	t   Transport
	cfg Config

	mu    sync.Mutex // serializes exchanges
	seq   uint32
	rbuf  []byte
	wbuf  []byte
	dirty bool // an exchange was abandoned: replies may be in flight; resync before the next
	// closed is set by Close without the lock, which a Listen holds for as long as it listens:
	// closing the transport interrupts whatever read holds it.
	closed atomic.Bool
	fams   map[string]*FamilyInfo

	unsolicited   []message // messages sent unasked that arrived during requests, for Listen
	stashLost     bool
	reportedDrops uint32 // the socket's drop counter at the last loss a listener was told of
	rcvBuf        int    // socket buffer sizes, read once
	sndBuf        int

	dlMu  sync.Mutex // guards deadline changes against a late context cancellation
	dlGen uint64
}

// Dial opens a generic netlink socket.
func Dial(cfg *Config) (*Conn, error) {
	c := cfg.withDefaults()
	t, err := dialSocket(&c)
	if err != nil {
		return nil, err
	}
	return NewConn(t, &c), nil
}

// NewConn makes a Conn on a transport (gnltest uses it with its in-process kernel).
func NewConn(t Transport, cfg *Config) *Conn {
	c := &Conn{t: t, cfg: cfg.withDefaults(), fams: map[string]*FamilyInfo{}}
	c.rbuf = make([]byte, c.cfg.MessageBuffer*readSlots(c.cfg.MessageBuffer))
	c.seq = uint32(time.Now().UnixNano()) // distinct from earlier sockets' stale replies
	return c
}

// Close closes the socket. It does not wait for calls in progress: a blocked read (a Listen, a
// request waiting for its reply) is interrupted and returns an error matching [ErrClosed].
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	return c.t.Close()
}

// PortID is the netlink port id of the socket.
func (c *Conn) PortID() uint32 { return c.t.PortID() }

// operation describes one request: what to call it in errors, how to match its replies.
type operation struct {
	family  *Family
	name    string
	cmd     uint8
	reply   uint8
	dump    bool
	noAck   bool // a do request: its reply (or an error) ends it, no NLM_F_ACK is asked for
	onReply func(attrs []byte) error
	// decodeOnly: onReply only decodes, so its errors are named after the request (other
	// callbacks return their callers' errors as they are).
	decodeOnly bool
}

func (op *operation) fail(errno syscall.Errno, msg string, off int) error {
	return &Error{Family: op.family.Name, Command: op.name, Errno: errno, Message: msg, Offset: off}
}

// wrap names the request in an error about it: "gnl: FAMILY COMMAND: cause".
func (op *operation) wrap(err error) error { return requestError(op.family.Name, op.name, err) }

// exchange holds the deadline bookkeeping of one call.
type exchange struct {
	c        *Conn
	ctx      context.Context
	deadline time.Time // the context's, or zero
	stop     func() bool
}

// begin locks the connection and arms the context: a cancellation interrupts a blocked read.
func (c *Conn) begin(ctx context.Context) (*exchange, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	x := &exchange{c: c, ctx: ctx}
	x.deadline, _ = ctx.Deadline()
	c.dlMu.Lock()
	gen := c.dlGen
	c.dlMu.Unlock()
	x.stop = context.AfterFunc(ctx, func() {
		c.dlMu.Lock()
		defer c.dlMu.Unlock()
		if c.dlGen == gen {
			_ = c.t.SetReadDeadline(time.Unix(1, 0))
		}
	})
	if c.dirty {
		if err := c.resync(x); err != nil {
			x.end()
			return nil, err
		}
	}
	return x, nil
}

func (x *exchange) end() {
	x.stop()
	x.c.dlMu.Lock()
	x.c.dlGen++
	x.c.dlMu.Unlock()
	x.c.mu.Unlock()
}

// receiveWithin reads one or more datagrams, waiting at most wait or until the context's
// deadline, whichever is earlier.
func (x *exchange) receiveWithin(wait time.Duration) ([]byte, error) {
	d := time.Now().Add(wait)
	if !x.deadline.IsZero() && x.deadline.Before(d) {
		d = x.deadline
	}
	x.c.dlMu.Lock()
	if x.ctx.Err() == nil {
		_ = x.c.t.SetReadDeadline(d)
	}
	x.c.dlMu.Unlock()
	n, err := x.c.t.Receive(x.c.rbuf)
	if err != nil {
		if x.c.closed.Load() {
			return nil, ErrClosed
		}
		if cerr := x.ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("waiting for a reply: %w", cerr)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !x.deadline.IsZero() && !d.Before(x.deadline) {
				// The context's deadline passed; its timer may not have fired yet.
				return nil, fmt.Errorf("waiting for a reply: %w", context.DeadlineExceeded)
			}
			return nil, fmt.Errorf("no reply within %s: %w", wait, err)
		}
		return nil, fmt.Errorf("receive: %w", err)
	}
	return x.c.rbuf[:n], nil
}

func (c *Conn) nextSeq() uint32 {
	c.seq++
	if c.seq == 0 {
		c.seq++
	}
	return c.seq
}

// resync discards replies of abandoned exchanges: it sends an NLMSG_NOOP that the kernel
// acknowledges and reads until that acknowledgement. Replies arrive in order, so everything
// before it is stale. (gnlpy's unread ACK poisoned the next query; ours cannot.)
func (c *Conn) resync(x *exchange) error {
	seq, err := c.sendNoop()
	if err != nil {
		return err
	}
	r := x.reader(true)
	defer r.stop()
	for {
		m, err := r.next()
		switch {
		case errors.Is(err, errDrained):
			// The kernel answers a NOOP at once: if nothing is queued, its ACK was dropped.
			r.overflowed = false
			if seq, err = c.sendNoop(); err != nil {
				return err
			}
			continue
		case errors.Is(err, ErrMalformed):
			continue // a torn stale datagram: the reader dropped it
		case err != nil:
			return fmt.Errorf("resync: %w", err)
		}
		if m.typ == typeError && m.seq == seq {
			c.dirty = false
			return nil
		}
		c.stash(m)
	}
}

func (c *Conn) sendNoop() (uint32, error) {
	seq := c.nextSeq()
	b := appendHeader(c.wbuf[:0], typeNoop, flagRequest|flagAck, seq, 0, 0, 0)[:nlHdrLen]
	finishMessage(b, 0)
	c.wbuf = b
	if err := c.t.Send(b); err != nil {
		return 0, fmt.Errorf("resync: %w", err)
	}
	return seq, nil
}

// roundTrip sends one request built by build (attributes only) and processes its replies.
func (c *Conn) roundTrip(ctx context.Context, op *operation, build func([]byte) ([]byte, error)) error {
	x, err := c.begin(ctx)
	if err != nil {
		return op.wrap(err)
	}
	defer x.end()
	id, err := c.familyID(x, op.family)
	if err != nil {
		return err
	}
	err = c.exchangeLocked(x, op, id, build)
	if !staleFamilyError(err) {
		return err
	}
	newID, changed, lerr := c.refreshFamily(x, op.family, id)
	switch {
	case lerr != nil:
		return lerr // the family is gone: say so rather than ENOENT from nowhere
	case !changed:
		return err // the family's own answer
	}
	return c.exchangeLocked(x, op, newID, build)
}

// exchangeLocked sends one request and interprets its answers until the last one.
func (c *Conn) exchangeLocked(x *exchange, op *operation, id uint16, build func([]byte) ([]byte, error)) error {
	seq, err := c.sendRequest(op, id, build)
	if err != nil {
		return err
	}
	c.dirty = true // until the final answer has been read
	k := call{id: id}
	// A dump's replies are produced as the socket is read: those an overflow dropped are gone.
	r := x.reader(!op.dump)
	defer r.stop()
	for {
		m, err := r.next()
		switch {
		case errors.Is(err, errDrained):
			c.dirty = false
			return op.wrap(fmt.Errorf("%w (%w)", ErrAckLost, syscall.ENOBUFS))
		case err != nil:
			return op.wrap(err)
		}
		if m.seq != seq || (m.pid == 0 && isUnsolicited(m)) {
			c.stash(m) // unsolicited, or a reply to an earlier request that was given up on
			continue
		}
		if done, err := c.answer(op, &k, m); done {
			return err
		}
	}
}

func (c *Conn) sendRequest(op *operation, id uint16, build func([]byte) ([]byte, error)) (uint32, error) {
	seq := c.nextSeq()
	flags := uint16(flagRequest | flagAck)
	switch {
	case op.dump:
		flags = flagRequest | flagDump
	case op.noAck:
		flags = flagRequest
	}
	b := appendHeader(c.wbuf[:0], id, flags, seq, c.t.PortID(), op.cmd, op.family.Version)
	b, err := build(b)
	if err != nil {
		return 0, op.wrap(fmt.Errorf("encode: %w", err))
	}
	finishMessage(b, 0)
	c.wbuf = b
	if err := c.t.Send(b); err != nil {
		return 0, op.wrap(err)
	}
	return seq, nil
}

// call is the state of one request while its answers are read.
type call struct {
	id          uint16
	interrupted bool  // a reply carried NLM_F_DUMP_INTR
	cbErr       error // the first error of the reply callback (a dump reads on to its end)
}

// answer interprets one message that carries the request's sequence number; done reports that
// it was the last the request gets. It leaves c.dirty set when more answers may be on their way.
func (c *Conn) answer(op *operation, k *call, m message) (done bool, err error) {
	if m.pid != c.t.PortID() && m.pid != 0 {
		return true, op.wrap(fmt.Errorf("%w: reply for port %d on port %d", ErrUnexpectedReply, m.pid, c.t.PortID()))
	}
	if m.flags&flagDumpIntr != 0 {
		k.interrupted = true
	}
	switch m.typ {
	case typeError, typeDone:
		return c.final(op, k, m)
	case typeNoop:
		return false, nil
	}
	attrs, err := replyAttrs(m, k.id, op.reply)
	if err != nil {
		return true, op.wrap(err)
	}
	if op.onReply != nil && k.cbErr == nil {
		k.cbErr = op.onReply(attrs)
		if k.cbErr != nil && op.decodeOnly {
			k.cbErr = op.wrap(fmt.Errorf("decode reply: %w", k.cbErr))
		}
		if k.cbErr != nil && !op.dump {
			c.dirty = !op.noAck // an ACK would still be on its way: the next call discards it
			return true, k.cbErr
		}
	}
	if op.noAck && m.flags&flagMulti == 0 {
		c.dirty = false
		return true, nil
	}
	return false, nil
}

// final interprets an NLMSG_ERROR or NLMSG_DONE of the request.
func (c *Conn) final(op *operation, k *call, m message) (done bool, err error) {
	if m.typ == typeDone && !op.dump && !op.noAck {
		return false, nil
	}
	c.dirty = false
	errno, msg, off, perr := ackError(m)
	switch {
	case perr != nil:
		return true, op.wrap(perr)
	case errno != 0:
		return true, op.fail(errno, msg, off)
	case k.cbErr != nil:
		return true, k.cbErr
	case k.interrupted:
		return true, op.wrap(ErrDumpInterrupted)
	case m.typ == typeError && op.dump:
		return false, nil // a dump is finished by NLMSG_DONE, not by an ACK
	}
	return true, nil
}
