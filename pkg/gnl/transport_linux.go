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
// requested network namespace), read and written through its raw connection so that one
// datagram is one read and a batch is one sendmsg.
type socketTransport struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	pid uint32

	rb      []byte
	rn      int
	rerr    error
	readFn  func(fd uintptr) bool
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
	t := &socketTransport{nl: nl, raw: raw, pid: nl.PID()}
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

func (t *socketTransport) write(fd uintptr) bool {
	// An unconnected netlink socket sends to the kernel (port 0): no address needed.
	_, t.werr = unix.Write(int(fd), t.wb)
	return !errors.Is(t.werr, unix.EAGAIN)
}

func (t *socketTransport) Receive(b []byte) (int, error) {
	t.rb = b
	err := t.raw.Read(t.readFn)
	t.rb = nil
	if err == nil {
		err = t.rerr
	}
	if err != nil {
		return 0, os.NewSyscallError("recv", err)
	}
	if t.rn > len(b) {
		return 0, fmt.Errorf("%w: datagram of %d bytes, larger than the %d-byte receive buffer", ErrMalformed, t.rn, len(b))
	}
	return t.rn, nil
}

func (t *socketTransport) read(fd uintptr) bool {
	// MSG_TRUNC makes recv return the datagram's real length, so truncation is seen.
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(t.rb))), uintptr(len(t.rb)),
		unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	t.rn, t.rerr = int(n), nil
	if errno != 0 {
		t.rerr = errno
	}
	return errno != unix.EAGAIN
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
