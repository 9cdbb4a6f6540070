package gnl

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// drainWait is how long a read waits for more answers after the kernel reported ENOBUFS. The
// kernel handles requests during sendmsg, so whatever it answered is queued already or was
// dropped: a queue that stays empty this long holds nothing more.
const drainWait = 5 * time.Millisecond

// errDrained ends a read after an overflow: the queue was read empty, and answers not seen by
// then were dropped by the kernel. Callers turn it into ErrAckLost or a resend; it is never
// returned to users.
var errDrained = errors.New("queue drained after a receive buffer overflow")

// reader is the one receive path of an exchange: it reads datagrams, splits them into messages,
// recovers from ENOBUFS and keeps what it read but was not asked for for the next Listen.
// Callers only interpret messages.
type reader struct {
	x    *exchange
	rest []byte // messages of the last read not returned yet
	// drain makes an overflow part of the read: after ENOBUFS the reader takes what is queued
	// with short waits and reports errDrained when nothing more comes. Without it, the ENOBUFS
	// error is returned (a dump's lost replies cannot be recovered; a listener reports them).
	drain bool
	// overflowed: ENOBUFS was seen, so answers may have been dropped.
	overflowed bool
}

func (x *exchange) reader(drain bool) reader { return reader{x: x, drain: drain} }

// next returns the next message. A datagram that cannot be framed is an error wrapping
// ErrMalformed, and the rest of that read is dropped.
func (r *reader) next() (message, error) {
	for len(r.rest) == 0 {
		if err := r.fill(); err != nil {
			return message{}, err
		}
	}
	m, rest, err := nextMessage(r.rest)
	if err != nil {
		r.rest = nil
		return message{}, err
	}
	r.rest = rest
	return m, nil
}

func (r *reader) fill() error {
	wait := r.x.c.cfg.Timeout
	if r.overflowed {
		wait = drainWait
	}
	dg, err := r.x.receiveWithin(wait)
	switch {
	case err == nil:
		r.rest = dg
		return nil
	case r.drain && errors.Is(err, syscall.ENOBUFS):
		// Unsolicited messages may have been dropped with our answers: tell the next Listen.
		r.overflowed, r.x.c.stashLost = true, true
		return nil
	case r.overflowed && errors.Is(err, os.ErrDeadlineExceeded) && r.x.ctx.Err() == nil:
		return errDrained
	}
	return err
}

// stop keeps the messages left in the last read for the next Listen: a read returns several
// datagrams, and unsolicited messages among them must not be lost when an exchange ends first.
func (r *reader) stop() {
	r.x.c.stashRest(r.rest)
	r.rest = nil
}

// replyAttrs checks the headers of a family's reply against what the request expects (the
// family id, and the reply command unless reply is 0) and returns its attributes.
func replyAttrs(m message, id uint16, reply uint8) ([]byte, error) {
	if m.typ != id {
		return nil, fmt.Errorf("%w: message type %d, want family id %d", ErrUnexpectedReply, m.typ, id)
	}
	if len(m.data) < genlHdrLen {
		return nil, fmt.Errorf("%w: reply of %d bytes", ErrMalformed, len(m.data))
	}
	if reply != 0 && m.data[0] != reply {
		return nil, fmt.Errorf("%w: reply command %d, want %d", ErrUnexpectedReply, m.data[0], reply)
	}
	return m.data[genlHdrLen:], nil
}
