package gnl

import (
	"time"
)

// Transport moves netlink datagrams between a [Conn] and a kernel. [Dial] uses a real
// NETLINK_GENERIC socket; package gnltest provides an in-process kernel that speaks the same
// protocol for unit tests.
type Transport interface {
	// Send writes b, one or more complete netlink messages, in one sendmsg.
	Send(b []byte) error
	// Receive reads one or more whole datagrams into b, one after another, and returns their
	// total length (a Conn parses the messages in order, so datagram boundaries do not matter). It returns an error wrapping
	// os.ErrDeadlineExceeded when the read deadline passes, and syscall.ENOBUFS when the kernel
	// dropped messages because the receive buffer overflowed.
	Receive(b []byte) (int, error)
	// SetReadDeadline bounds Receive; the zero time removes the bound. It may be called from
	// another goroutine to interrupt a Receive.
	SetReadDeadline(t time.Time) error
	// PortID is the socket's netlink port id, which replies carry.
	PortID() uint32
	// Buffers reports the receive and send buffer sizes in bytes (as the kernel accounts them).
	Buffers() (rcv, snd int)
	Close() error
}
