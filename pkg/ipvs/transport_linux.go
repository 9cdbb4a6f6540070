//go:build linux

package ipvs

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/kubelvs/kubelvs/pkg/gnl"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpSocket is a NETLINK_GENERIC socket for pipelined dumps (a gnl.Transport). gnl keeps its
// own socket type private, and its Conn cannot pipeline dumps, so Table reads on this one.
type dumpSocket struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	pid uint32

	// recvmmsg state, reused across calls.
	hdrs [maxBatchRead]mmsghdr
	iovs [maxBatchRead]unix.Iovec
}

// maxBatchRead is how many datagrams one recvmmsg reads. A destination dump is two datagrams
// (the data, then NLMSG_DONE, which the kernel queues while the first is read), so reading both
// in one syscall saves a third of the syscalls of a table read.
const maxBatchRead = 2

// mmsghdr is struct mmsghdr; Go pads it like C on 32- and 64-bit.
type mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

var _ gnl.Transport = (*dumpSocket)(nil)

func openDumpTransport(cfg *Config) (gnl.Transport, error) {
	nl, err := netlink.Dial(unix.NETLINK_GENERIC, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("open generic netlink socket: %w", err)
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		_ = nl.Close()
		return nil, err
	}
	s := &dumpSocket{nl: nl, raw: raw, pid: nl.PID()}
	_ = raw.Control(func(fd uintptr) {
		const size = 8 << 20
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
	return s, nil
}

func (s *dumpSocket) Send(b []byte) error {
	var serr error
	err := s.raw.Write(func(fd uintptr) bool {
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

func (s *dumpSocket) Receive(b []byte) (int, error) {
	var (
		n, flags int
		rerr     error
	)
	err := s.raw.Read(func(fd uintptr) bool {
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
		return 0, fmt.Errorf("%w: datagram larger than the %d-byte buffer", gnl.ErrMalformed, len(b))
	}
	return n, nil
}

// receiveMany reads up to len(bufs) datagrams that are already queued (at least one, waiting for
// it like Receive) with one recvmmsg, and returns their lengths.
func (s *dumpSocket) receiveMany(bufs [][]byte, lens []int) (int, error) {
	n := min(len(bufs), maxBatchRead)
	for i := range n {
		s.iovs[i] = unix.Iovec{Base: &bufs[i][0]}
		s.iovs[i].SetLen(len(bufs[i]))
		s.hdrs[i] = mmsghdr{}
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	var (
		got  int
		rerr error
	)
	err := s.raw.Read(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			rerr = e
			return e != unix.EAGAIN
		}
		got, rerr = int(r), nil
		return true
	})
	runtime.KeepAlive(bufs)
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, os.NewSyscallError("recvmmsg", err)
	}
	for i := range got {
		if s.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			return 0, fmt.Errorf("%w: datagram larger than the %d-byte buffer", gnl.ErrMalformed, len(bufs[i]))
		}
		lens[i] = int(s.hdrs[i].Len)
	}
	return got, nil
}

func (s *dumpSocket) SetReadDeadline(t time.Time) error { return s.nl.SetReadDeadline(t) }
func (s *dumpSocket) PortID() uint32                    { return s.pid }
func (s *dumpSocket) Close() error                      { return s.nl.Close() }

func (s *dumpSocket) Buffers() (rcv, snd int) {
	_ = s.raw.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	return rcv, snd
}
