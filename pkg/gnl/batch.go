package gnl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
)

// Batch collects requests to send pipelined: many requests per sendmsg, each with its own
// sequence number and its own result. Add requests with [Command.Add], send them with
// [Conn.SendBatch], then read each request's result with [Batch.Err]. A Batch can be reset and
// reused; it is not safe for concurrent use.
//
// Only the last request of each sendmsg asks for an acknowledgement: the kernel answers the
// others only when they fail (netlink reports every error, NLM_F_ACK or not) and handles a
// sendmsg's requests in order, so the last acknowledgement tells that every earlier request
// without an error report succeeded. An acknowledgement per request would cost the kernel an
// skb allocated, queued and read back for each (the README has the measurement).
type Batch struct {
	buf     []byte
	ops     []batchOp
	results []error
	sends   int
}

type batchOp struct {
	family   *Family
	name     string
	off, end int
	id       uint16                   // the family's id on the connection, set by SendBatch
	reply    uint8                    // for AddDo: the command replies carry, 0 for any
	onReply  func(attrs []byte) error // for AddDo: the reply's attributes
}

// wrap names the request in an error about it.
func (op *batchOp) wrap(err error) error { return requestError(op.family.Name, op.name, err) }

// ackBudget is the receive-buffer space one acknowledgement takes in the kernel's accounting
// (skb truesize), with margin. The window keeps the acks in flight under the buffer size.
const ackBudget = 1024

// Len is the number of requests in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.buf, b.ops, b.results, b.sends = b.buf[:0], b.ops[:0], b.results[:0], 0
}

// Err is the result of request i after [Conn.SendBatch]: nil when the kernel acknowledged it,
// an [*Error] when the kernel refused it, an error wrapping [ErrAckLost] when its outcome is
// unknown, or the transport error that stopped the batch before it was answered.
func (b *Batch) Err(i int) error {
	if i < len(b.results) {
		return b.results[i]
	}
	return nil
}

// Sends is how many sendmsg calls the last SendBatch made.
func (b *Batch) Sends() int { return b.sends }

func (b *Batch) add(f *Family, name string, cmd, reply uint8, onReply func([]byte) error, build func([]byte) ([]byte, error)) error {
	off := len(b.buf)
	buf := appendHeader(b.buf, 0, flagRequest, 0, 0, cmd, f.Version) // SendBatch sets NLM_F_ACK where needed
	buf, err := build(buf)
	if err != nil {
		b.buf = buf[:off]
		return requestError(f.Name, name, fmt.Errorf("encode: %w", err))
	}
	finishMessage(buf, off)
	b.buf = buf
	b.ops = append(b.ops, batchOp{family: f, name: name, off: off, end: len(buf), reply: reply, onReply: onReply})
	return nil
}

// SendBatch sends every request of the batch, pipelined in windows sized so that their error
// reports and replies fit in the socket's receive buffer, and records each request's result in
// the batch. The kernel handles the requests in order and a failed request does not stop the
// ones after it. If the receive buffer overflows anyway (ENOBUFS), the requests of that window
// whose outcome is unknown get [ErrAckLost], the window shrinks and the batch goes on.
// The returned error is non-nil when requests were not sent or not answered (a transport
// error, the context, the timeout); their results say so too. Per-request kernel errors are
// not returned here: check [Batch.Err].
func (c *Conn) SendBatch(ctx context.Context, b *Batch) error {
	n := len(b.ops)
	b.results = append(b.results[:0], make([]error, n)...)
	b.sends = 0
	if n == 0 {
		return nil
	}
	x, err := c.begin(ctx)
	if err != nil {
		err = fmt.Errorf("gnl: batch: %w", err)
		fillResults(b.results, make([]bool, n), err)
		return err
	}
	defer x.end()
	if err := c.resolveBatch(x, b); err != nil {
		fillResults(b.results, make([]bool, n), err)
		return err
	}
	if c.rcvBuf == 0 {
		c.rcvBuf, c.sndBuf = c.t.Buffers()
	}
	window := max(1, min(c.cfg.Window, c.rcvBuf/ackBudget))
	maxBytes := max(1, c.sndBuf/2)
	done := make([]bool, n)
	var checked []*Family // families looked up again during this batch
	for i := 0; i < n; {
		j, size := i, 0
		for j < n && j-i < window && (j == i || size+b.ops[j].end-b.ops[j].off <= maxBytes) {
			size += b.ops[j].end - b.ops[j].off
			j++
		}
		lost, err := c.sendWindow(x, b, i, j, done)
		if err == nil {
			err = c.retryStale(x, b, i, j, done, &checked)
		}
		if err != nil {
			fillResults(b.results[i:], done[i:], err)
			return err
		}
		if lost {
			window = max(1, window/2)
		}
		i = j
	}
	return nil
}

// retryStale sends again, once, the requests of window [i, j) that failed because their
// family's cached id was stale (the family was registered again under a new id; see
// [Conn.Family]), and updates the ids of the batch's later requests. A family is looked up
// again only when all its requests of the window failed so, and at most once per batch.
func (c *Conn) retryStale(x *exchange, b *Batch, i, j int, done []bool, checked *[]*Family) error {
	var sub Batch
	var at []int        // sub's requests' indices in b
	var moved []*Family // families found under a new id by this window's failures
	for k := i; k < j; k++ {
		op := &b.ops[k]
		if !staleFamilyError(b.results[k]) {
			continue
		}
		if !slices.Contains(*checked, op.family) && allStale(b, i, j, op.family) {
			*checked = append(*checked, op.family)
			id, changed, err := c.refreshFamily(x, op.family, op.id)
			if err != nil || !changed {
				continue // gone (the results say ENOENT already), or the family's own answer
			}
			moved = append(moved, op.family)
			for l := k; l < len(b.ops); l++ {
				if b.ops[l].family == op.family {
					b.ops[l].id = id
				}
			}
		}
		if slices.Contains(moved, op.family) {
			sop := *op
			sop.off = len(sub.buf)
			sub.buf = append(sub.buf, b.buf[op.off:op.end]...)
			sop.end = len(sub.buf)
			sub.ops = append(sub.ops, sop)
			at = append(at, k)
		}
	}
	if len(sub.ops) == 0 {
		return nil
	}
	sub.results = make([]error, len(sub.ops))
	sdone := make([]bool, len(sub.ops))
	_, err := c.sendWindow(x, &sub, 0, len(sub.ops), sdone)
	b.sends += sub.sends
	for s, k := range at {
		b.results[k], done[k] = sub.results[s], sdone[s]
	}
	return err
}

// allStale reports whether every request of family f in window [i, j) failed as requests with a
// stale family id do: the kernel refuses all of them, so one that succeeded, got a reply or
// another error shows that the id is current, and no lookup is needed.
func allStale(b *Batch, i, j int, f *Family) bool {
	for k := i; k < j; k++ {
		if b.ops[k].family == f && !staleFamilyError(b.results[k]) {
			return false
		}
	}
	return true
}

// resolveBatch looks up the id of each family the batch's requests address.
func (c *Conn) resolveBatch(x *exchange, b *Batch) error {
	var last *Family
	var id uint16
	for i := range b.ops {
		op := &b.ops[i]
		if op.family != last {
			var err error
			if id, err = c.familyID(x, op.family); err != nil {
				return err
			}
			last = op.family
		}
		op.id = id
	}
	return nil
}

// sendWindow sends requests [i, j) in one sendmsg, the last one asking for an acknowledgement,
// and records their results; lost reports that the receive buffer overflowed.
func (c *Conn) sendWindow(x *exchange, b *Batch, i, j int, done []bool) (lost bool, err error) {
	var seq0 uint32
	for k := i; k < j; k++ {
		flags := uint16(flagRequest)
		if k == j-1 {
			flags |= flagAck // the window's barrier
		}
		seq := c.nextSeq()
		if k == i {
			seq0 = seq // c.seq+1 would be 0 when the counter is at 2^32-1
		}
		patchHeader(b.buf[b.ops[k].off:], b.ops[k].id, flags, seq, c.t.PortID())
	}
	if err := c.t.Send(b.buf[b.ops[i].off:b.ops[j-1].end]); err != nil {
		return false, fmt.Errorf("gnl: batch: send: %w", err)
	}
	b.sends++
	c.dirty = true
	lost, err = c.collectAcks(x, b, i, j, seq0, done)
	if err != nil {
		return lost, err
	}
	for k := i; k < j; k++ {
		switch {
		case done[k]:
		case lost:
			b.results[k] = b.ops[k].wrap(fmt.Errorf("%w (%w)", ErrAckLost, syscall.ENOBUFS))
		case b.ops[k].onReply != nil:
			b.results[k] = b.ops[k].wrap(fmt.Errorf("%w: no reply", ErrUnexpectedReply))
		}
		// Otherwise the request succeeded: the kernel reported no error for it before
		// acknowledging the window's last request.
	}
	c.dirty = false
	return lost, nil
}

// collectAcks reads the error reports and replies of requests [i, j) (sequence numbers from seq0)
// until the acknowledgement of the last one arrives. After an ENOBUFS it drains what the kernel
// queued (the kernel handled the whole sendmsg before returning, so everything it will send is
// already queued) and reports lost.
func (c *Conn) collectAcks(x *exchange, b *Batch, i, j int, seq0 uint32, done []bool) (lost bool, err error) {
	n := uint32(j - i)
	r := x.reader(true)
	defer r.stop()
	for {
		m, err := r.next()
		switch {
		case errors.Is(err, errDrained):
			return true, nil
		case err != nil:
			return r.overflowed, fmt.Errorf("gnl: batch: %w", err)
		}
		idx := seqIndex(m.seq, seq0)
		if idx >= n || (m.pid == 0 && isUnsolicited(m)) {
			c.stash(m) // kept if unsolicited; a stale reply is dropped
			continue
		}
		k := i + int(idx)
		if m.typ != typeError {
			b.reply(k, m, done)
			continue // the last request's acknowledgement follows its reply
		}
		b.ack(k, m, done)
		if idx == n-1 && !r.overflowed {
			return false, nil
		}
	}
}

// reply hands request k's reply to its callback.
func (b *Batch) reply(k int, m message, done []bool) {
	op := &b.ops[k]
	if op.onReply == nil || done[k] || m.typ < 0x10 {
		return // a reply to a request that only wanted an acknowledgement
	}
	if attrs, err := replyAttrs(m, op.id, op.reply); err != nil {
		b.results[k] = op.wrap(err)
	} else {
		b.results[k] = op.onReply(attrs)
	}
	done[k] = true
}

// ack records what an acknowledgement or error report says of request k. A successful
// acknowledgement (only the last request asks for one) leaves the result as it is: nil, or
// what the request's reply made it.
func (b *Batch) ack(k int, m message, done []bool) {
	errno, msg, off, perr := ackError(m)
	switch {
	case perr != nil:
		b.results[k] = b.ops[k].wrap(perr)
		done[k] = true
	case errno != 0:
		b.results[k] = &Error{Family: b.ops[k].family.Name, Command: b.ops[k].name, Errno: errno, Message: msg, Offset: off}
		done[k] = true
	}
}

// seqIndex is the position of sequence number seq in a window whose first request carries seq0.
// nextSeq skips 0 when the counter wraps, so past the wrap the distance is one less; 0 itself is
// never a request's (notifications carry it) and falls outside every window.
func seqIndex(seq, seq0 uint32) uint32 {
	if seq == 0 {
		return ^uint32(0)
	}
	idx := seq - seq0
	if seq < seq0 {
		idx-- // the window crossed 2^32, where 0 was skipped
	}
	return idx
}

func fillResults(results []error, done []bool, err error) {
	for k := range results {
		if !done[k] {
			results[k] = err
		}
	}
}
