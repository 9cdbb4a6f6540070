//go:build linux

package gnl

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

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

func (t *socketTransport) Send(b []byte) error {
	var serr error
	err := t.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return os.NewSyscallError("sendto", err)
	}
	return nil
}

func (t *socketTransport) Receive(b []byte) (int, error) {
	var (
		n     int
		flags int
		rerr  error
	)
	err := t.raw.Read(func(fd uintptr) bool {
		n, _, flags, _, rerr = unix.Recvmsg(int(fd), b, nil, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, os.NewSyscallError("recvmsg", err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return 0, fmt.Errorf("%w: datagram larger than the %d-byte receive buffer", ErrMalformed, len(b))
	}
	return n, nil
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
