//go:build linux

package gnl

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// socketTransport is a NETLINK_GENERIC socket opened by mdlayher/netlink (which also enters the
// requested network namespace), read and written through its raw connection so that a batch is
// one sendmsg and one recvmmsg reads every queued datagram that fits (a dump's data and its
// NLMSG_DONE, many acknowledgements).
type socketTransport struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	pid uint32

	slot    int // bytes per datagram read (Config.MessageBuffer)
	slots   int // datagrams one read may take
	rn      int // datagrams read
	rerr    error
	readFn  func(fd uintptr) bool
	hdrs    [maxReadSlots]mmsghdr // recvmmsg state, reused so that reads do not allocate
	iovs    [maxReadSlots]unix.Iovec
	wb      []byte
	werr    error
	writeFn func(fd uintptr) bool
}

func dialSocket(cfg *Config) (*socketTransport, error) {
	nl, err := netlink.Dial(unix.NETLINK_GENERIC, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("gnl: open generic netlink socket: %w", err)
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("gnl: generic netlink socket: %w", err)
	}
	t := &socketTransport{nl: nl, raw: raw, pid: nl.PID(), slot: cfg.MessageBuffer}
	t.readFn, t.writeFn = t.read, t.write
	// Extended ACKs carry the kernel's error message; capped ACKs keep error replies small so
	// pipelined batches fit in the receive buffer. Kernels without them still work.
	for _, o := range []netlink.ConnOption{netlink.ExtendedAcknowledge, netlink.CapAcknowledge} {
		if err := nl.SetOption(o, true); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			_ = nl.Close()
			return nil, fmt.Errorf("gnl: set socket option: %w", err)
		}
	}
	t.setBuffer(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, cfg.ReceiveBuffer)
	t.setBuffer(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.SendBuffer)
	return t, nil
}

// setBuffer sizes a socket buffer, beyond net.core.[rw]mem_max when the caller has CAP_NET_ADMIN,
// to what the limit allows otherwise.
func (t *socketTransport) setBuffer(force, plain, n int) {
	_ = t.raw.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
		}
	})
}

// Send and Receive are called by one goroutine at a time (the Conn's lock); they keep their
// syscall closures and results in the transport so that the hot path does not allocate.

func (t *socketTransport) Send(b []byte) error {
	t.wb = b
	err := t.raw.Write(t.writeFn)
	t.wb = nil
	if err == nil {
		err = t.werr
	}
	if err != nil {
		return os.NewSyscallError("send", err)
	}
	return nil
}

// rawSendMax is the largest message sent without telling the Go scheduler (RawSyscall): one
// request, a dump's request among them. Larger ones are batches, whose sendmsg makes the kernel
// handle up to a window of requests; they go through syscall.Syscall, so that the scheduler can
// hand the P on while the kernel works.
const rawSendMax = 4096

func (t *socketTransport) write(fd uintptr) bool {
	// An unconnected netlink socket sends to the kernel (port 0): no address needed.
	if n := len(t.wb); n > 0 && n <= rawSendMax {
		// The kernel runs a dump's first round inside this sendmsg, then queues the data to the
		// socket, which wakes whatever thread waits on the netpoller. Through syscall.Syscall,
		// a sendmsg that outlasts a sysmon tick has its P retaken, and handoffp starts another
		// M to poll the network: each dump then costs thread wake-ups and context switches in
		// the guest, and more of them the slower the vCPU runs (a busy host). The socket is
		// non-blocking and one request is little work, so it need not leave the scheduler (the
		// README's pkg/ipvs section has the measurement).
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&t.wb[0])), uintptr(n))
		t.werr = nil
		if errno != 0 {
			t.werr = errno
		}
	} else {
		_, t.werr = unix.Write(int(fd), t.wb)
	}
	return !errors.Is(t.werr, unix.EAGAIN)
}

// mmsghdr is struct mmsghdr; Go pads it like C.
type mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

// Receive reads with one recvmmsg into slots of t.slot bytes of b, then moves the datagrams
// together (each padded to netlink alignment) and returns their total length.
func (t *socketTransport) Receive(b []byte) (int, error) {
	slot := min(t.slot, len(b))
	n := min(len(b)/max(slot, 1), maxReadSlots)
	if n == 0 {
		return 0, fmt.Errorf("a %d-byte buffer holds no datagram", len(b))
	}
	for i := range n {
		t.iovs[i] = unix.Iovec{Base: &b[i*slot]}
		t.iovs[i].SetLen(slot)
		t.hdrs[i] = mmsghdr{}
		t.hdrs[i].Hdr.Iov = &t.iovs[i]
		t.hdrs[i].Hdr.SetIovlen(1)
	}
	t.slots = n
	err := t.raw.Read(t.readFn)
	for i := range n {
		t.iovs[i].Base = nil // do not keep b reachable from the transport
	}
	if err == nil {
		err = t.rerr
	}
	if err != nil {
		return 0, os.NewSyscallError("recvmmsg", err)
	}
	total := 0
	for i := range t.rn {
		h := &t.hdrs[i]
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			return 0, fmt.Errorf("%w: datagram larger than the %d-byte receive buffer", ErrMalformed, slot)
		}
		l := int(h.Len)
		copy(b[total:], b[i*slot:i*slot+l])
		for k := total + l; k < align(total+l) && k < len(b); k++ {
			b[k] = 0 // padding, so that the next datagram starts aligned
		}
		total = min(align(total+l), len(b))
	}
	return total, nil
}

func (t *socketTransport) read(fd uintptr) bool {
	// MSG_DONTWAIT: wait in the netpoller (which honours the deadline), then take every queued
	// datagram that fits without blocking again. The call never waits, so it is made without
	// telling the scheduler, for the reason write gives: a dump's recvmmsg also makes the
	// kernel run its next round (and queue NLMSG_DONE), long enough for sysmon to retake the P.
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&t.hdrs[0])), uintptr(t.slots),
		unix.MSG_DONTWAIT, 0, 0)
	t.rerr = nil
	if errno != 0 {
		t.rn, t.rerr = 0, errno
		return errno != unix.EAGAIN
	}
	t.rn = int(r)
	return true
}

// Drops reads the kernel's count of messages dropped for this socket (SK_MEMINFO_DROPS).
func (t *socketTransport) Drops() (uint32, bool) {
	var (
		info [16]uint32
		ok   bool
	)
	_ = t.raw.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(info))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		ok = errno == 0 && l/4 > unix.SK_MEMINFO_DROPS
	})
	return info[unix.SK_MEMINFO_DROPS], ok
}

func (t *socketTransport) JoinGroup(group uint32) error  { return t.nl.JoinGroup(group) }
func (t *socketTransport) LeaveGroup(group uint32) error { return t.nl.LeaveGroup(group) }

func (t *socketTransport) SetReadDeadline(d time.Time) error { return t.nl.SetReadDeadline(d) }
func (t *socketTransport) PortID() uint32                    { return t.pid }
func (t *socketTransport) Close() error                      { return t.nl.Close() }

func (t *socketTransport) Buffers() (rcv, snd int) {
	_ = t.raw.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	return rcv, snd
}
