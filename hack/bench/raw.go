package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// raw is the floor: no netlink library, just the generic-netlink messages built by hand on a raw
// socket. Writes are pipelined `window` requests per sendmsg; only the last request of each sendmsg
// asks for an acknowledgement (NLM_F_ACK), the kernel reports the others only when they fail, and the
// replies are read after each send up to that acknowledgement: the least the kernel must do and send
// back to still give every request a result. Reads are one service dump and one destination dump per
// service, in sequence (the kernel runs one dump per socket at a time: a second dump request sent
// before the first finished gets EBUSY).
//
// With ackEach (the "raw, ACK each" contender), every request asks for an acknowledgement, as the
// issue's reference figures were measured: that shows what acknowledging each write costs the kernel.
type raw struct {
	fd      int
	family  uint16
	seq     uint32
	window  int
	ackEach bool
	rbuf    []byte
	svc     *raw // for the service dump, with a larger receive buffer
}

// Generic netlink and IPVS constants, from linux/genetlink.h and linux/ip_vs.h.
const (
	genlIDCtrl         = 0x10
	ctrlCmdGetFamily   = 3
	ctrlAttrFamilyID   = 1
	ctrlAttrFamilyName = 2

	ipvsGenlVersion    = 1
	ipvsCmdNewService  = 1
	ipvsCmdGetService  = 4
	ipvsCmdNewDest     = 5
	ipvsCmdGetDest     = 8
	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2

	svcAttrAF        = 1
	svcAttrProtocol  = 2
	svcAttrAddr      = 3
	svcAttrPort      = 4
	svcAttrFwmark    = 5
	svcAttrSchedName = 6
	svcAttrFlags     = 7
	svcAttrTimeout   = 8
	svcAttrNetmask   = 9

	destAttrAddr       = 1
	destAttrPort       = 2
	destAttrFwdMethod  = 3
	destAttrWeight     = 4
	destAttrUThresh    = 5
	destAttrLThresh    = 6
	destAttrAddrFamily = 11

	nlaFNested   = 1 << 15
	nlaTypeMask  = 1<<14 - 1
	nlmsgHdrLen  = 16
	genlHdrLen   = 4
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmFDumpIntr = 0x10
)

func newRaw(o options) (contender, error) { return dialRawContender(o, false) }

func newRawAckEach(o options) (contender, error) { return dialRawContender(o, true) }

func dialRawContender(o options, ackEach bool) (contender, error) {
	r, err := dialRaw(o.window, o.rbuf)
	if err != nil {
		return nil, err
	}
	// The kernel sizes dump messages to the largest receive buffer a socket has used (up to 32 KiB), and
	// the service dump restarts its walk of the service table at every message, so it is quadratic in
	// the number of messages: dump services on a socket with a large buffer, destinations (a few per
	// service) on one with a small buffer, which is cheaper per dump.
	if r.svc, err = dialRaw(o.window, o.svcRbuf); err != nil {
		return nil, err
	}
	r.ackEach = ackEach
	return r, nil
}

func dialRaw(window, rbuf int) (*raw, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("raw: socket: %w", err)
	}
	r := &raw{fd: fd, window: window, rbuf: make([]byte, rbuf)}
	if err := r.setup(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw: %w", err)
	}
	return r, nil
}

func (r *raw) setup() error {
	if err := unix.Bind(r.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// Room for a whole window of ACKs (each ACK skb costs about 1 KiB of receive buffer) and requests.
	size := 64 << 20
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, o[0], size); err != nil {
			if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, o[1], size); err != nil {
				return fmt.Errorf("buffer size: %w", err)
			}
		}
	}
	// ACKs of errors without the whole request echoed back; a lost reply must not hang the benchmark.
	_ = unix.SetsockoptInt(r.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval(int64(30 * time.Second))
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("receive timeout: %w", err)
	}
	// Resolve the IPVS family: CTRL_CMD_GETFAMILY with the name.
	var m msg
	seq := r.next()
	start := m.begin(genlIDCtrl, unix.NLM_F_REQUEST, seq, ctrlCmdGetFamily, 1)
	m.attr(ctrlAttrFamilyName, append([]byte("IPVS"), 0))
	m.end(start)
	if err := r.send(m.b); err != nil {
		return err
	}
	replies, err := r.collect(seq)
	if err != nil {
		return fmt.Errorf("resolving family IPVS (is ip_vs loaded?): %w", err)
	}
	for _, p := range replies {
		for typ, v := range attrs(p[genlHdrLen:]) {
			if typ == ctrlAttrFamilyID && len(v) >= 2 {
				r.family = binary.NativeEndian.Uint16(v)
				return nil
			}
		}
	}
	return errors.New("no family id in CTRL_CMD_GETFAMILY reply")
}

func (r *raw) next() uint32 { r.seq++; return r.seq }

func (r *raw) send(b []byte) error {
	if err := unix.Sendto(r.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	return nil
}

// recv reads one datagram and calls f for each netlink message in it.
func (r *raw) recv(f func(typ, flags uint16, seq uint32, payload []byte) error) error {
	n, _, rflags, _, err := unix.Recvmsg(r.fd, r.rbuf, nil, 0)
	if err != nil {
		return fmt.Errorf("recvmsg: %w", err)
	}
	if rflags&unix.MSG_TRUNC != 0 {
		return fmt.Errorf("netlink datagram larger than the %d-byte receive buffer (-rbuf)", len(r.rbuf))
	}
	b := r.rbuf[:n]
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return fmt.Errorf("bad netlink message length %d (%d bytes left)", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		flags := binary.NativeEndian.Uint16(b[6:])
		seq := binary.NativeEndian.Uint32(b[8:])
		if err := f(typ, flags, seq, b[nlmsgHdrLen:l]); err != nil {
			return err
		}
		b = b[min(align4(l), len(b)):]
	}
	return nil
}

// errno decodes the error code of an NLMSG_ERROR or NLMSG_DONE payload.
func errno(payload []byte) error {
	if len(payload) < 4 {
		return errors.New("short error message")
	}
	if e := int32(binary.NativeEndian.Uint32(payload)); e != 0 {
		return unix.Errno(-e)
	}
	return nil
}

// collect reads the replies of one request (a dump or a single reply) and returns copies of their
// payloads.
func (r *raw) collect(seq uint32) ([][]byte, error) {
	var out [][]byte
	err := r.replies(seq, func(p []byte) { out = append(out, append([]byte(nil), p...)) })
	return out, err
}

// replies reads the replies of one request and calls each with every payload (valid during the call).
func (r *raw) replies(seq uint32, each func(p []byte)) error {
	done := false
	for !done {
		err := r.recv(func(typ, flags uint16, s uint32, p []byte) error {
			if s != seq {
				return fmt.Errorf("reply for sequence %d while waiting for %d", s, seq)
			}
			if flags&nlmFDumpIntr != 0 {
				return errors.New("dump interrupted (NLM_F_DUMP_INTR)")
			}
			switch typ {
			case nlmsgError, nlmsgDone:
				done = true
				return errno(p)
			}
			each(p)
			if flags&unix.NLM_F_MULTI == 0 {
				done = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *raw) Program(t *Table) error {
	var m msg
	first, pending, last := r.seq+1, 0, 0 // last: the offset of the window's last request
	flags := uint16(unix.NLM_F_REQUEST)
	if r.ackEach {
		flags |= unix.NLM_F_ACK
	}
	flush := func() error {
		if pending == 0 {
			return nil
		}
		// The window's last request asks for the acknowledgement that ends its replies.
		binary.NativeEndian.PutUint16(m.b[last+6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		if err := r.send(m.b); err != nil {
			return err
		}
		var firstErr error
		end := first + uint32(pending) - 1
		for done := false; !done; {
			err := r.recv(func(typ, _ uint16, seq uint32, p []byte) error {
				if typ != nlmsgError {
					return fmt.Errorf("unexpected message type %d, want an ACK", typ)
				}
				if seq < first || seq > end {
					return fmt.Errorf("ACK for sequence %d outside [%d, %d]", seq, first, end)
				}
				done = done || seq == end
				if err := errno(p); err != nil && firstErr == nil {
					firstErr = fmt.Errorf("request %d: %w", seq, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		m.b, first, pending = m.b[:0], r.seq+1, 0
		return firstErr
	}
	add := func(start int) error {
		last = start
		if pending++; pending >= r.window {
			return flush()
		}
		return nil
	}
	for i := range t.Services {
		s := &t.Services[i]
		start := m.begin(r.family, flags, r.next(), ipvsCmdNewService, ipvsGenlVersion)
		n := m.nest(ipvsCmdAttrService)
		m.serviceID(s)
		m.attr(svcAttrSchedName, append([]byte(Scheduler), 0))
		m.attr(svcAttrFlags, make([]byte, 8)) // struct ip_vs_flags {flags, mask}
		m.u32(svcAttrTimeout, 0)
		m.u32(svcAttrNetmask, 0xffffffff)
		m.endNest(n)
		m.end(start)
		if err := add(start); err != nil {
			return fmt.Errorf("raw: %w", err)
		}
		for _, d := range s.Dests {
			start := m.begin(r.family, flags, r.next(), ipvsCmdNewDest, ipvsGenlVersion)
			n := m.nest(ipvsCmdAttrService)
			m.serviceID(s)
			m.endNest(n)
			n = m.nest(ipvsCmdAttrDest)
			a := d.Addr.As16()
			if d.Addr.Is4() {
				a = [16]byte{}
				copy(a[:], d.Addr.AsSlice())
			}
			m.attr(destAttrAddr, a[:])
			m.be16(destAttrPort, d.Port)
			m.u32(destAttrFwdMethod, 0) // IP_VS_CONN_F_MASQ
			m.u32(destAttrWeight, d.Weight)
			m.u32(destAttrUThresh, 0)
			m.u32(destAttrLThresh, 0)
			m.u16(destAttrAddrFamily, unix.AF_INET)
			m.endNest(n)
			m.end(start)
			if err := add(start); err != nil {
				return fmt.Errorf("raw: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	return nil
}

func (r *raw) Read() (services, dests int, err error) {
	var m msg
	seq := r.svc.next()
	m.end(m.begin(r.family, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, ipvsCmdGetService, ipvsGenlVersion))
	t0 := time.Now()
	if err := r.svc.send(m.b); err != nil {
		return 0, 0, fmt.Errorf("raw: %w", err)
	}
	svcs, err := r.svc.collect(seq)
	if err != nil {
		return 0, 0, fmt.Errorf("raw: service dump: %w", err)
	}
	t1 := time.Now()
	defer func() {
		fmt.Fprintf(os.Stderr, "raw: read: service dump %.2fs, %d destination dumps %.2fs\n",
			t1.Sub(t0).Seconds(), len(svcs), time.Since(t1).Seconds())
	}()
	for _, p := range svcs {
		// Re-encode the identifying attributes of the service (family, protocol, address, port or
		// fwmark) as the selector of its destination dump.
		var id []byte
		for typ, v := range attrs(p[genlHdrLen:]) {
			if typ == ipvsCmdAttrService {
				id = v
			}
		}
		if id == nil {
			return 0, 0, errors.New("raw: service message without IPVS_CMD_ATTR_SERVICE")
		}
		m.b = m.b[:0]
		seq := r.next()
		start := m.begin(r.family, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, ipvsCmdGetDest, ipvsGenlVersion)
		n := m.nest(ipvsCmdAttrService)
		for typ, v := range attrs(id) {
			switch typ {
			case svcAttrAF, svcAttrProtocol, svcAttrAddr, svcAttrPort, svcAttrFwmark:
				m.attr(typ, v)
			}
		}
		m.endNest(n)
		m.end(start)
		if err := r.send(m.b); err != nil {
			return 0, 0, fmt.Errorf("raw: %w", err)
		}
		if err := r.replies(seq, func([]byte) { dests++ }); err != nil {
			return 0, 0, fmt.Errorf("raw: destination dump: %w", err)
		}
	}
	return len(svcs), dests, nil
}

// msg builds netlink messages into one buffer.
type msg struct{ b []byte }

func align4(n int) int { return (n + 3) &^ 3 }

// begin appends a netlink and a generic netlink header and returns the message's offset for end.
func (m *msg) begin(typ, flags uint16, seq uint32, cmd, version uint8) int {
	start := len(m.b)
	m.b = binary.NativeEndian.AppendUint32(m.b, 0) // length, set by end
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = binary.NativeEndian.AppendUint16(m.b, flags)
	m.b = binary.NativeEndian.AppendUint32(m.b, seq)
	m.b = binary.NativeEndian.AppendUint32(m.b, 0) // port id: the kernel fills ours in
	m.b = append(m.b, cmd, version, 0, 0)
	return start
}

func (m *msg) end(start int) {
	binary.NativeEndian.PutUint32(m.b[start:], uint32(len(m.b)-start))
}

func (m *msg) attr(typ uint16, v []byte) {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(4+len(v)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, v...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *msg) nest(typ uint16) int {
	start := len(m.b)
	m.b = binary.NativeEndian.AppendUint16(m.b, 0)
	m.b = binary.NativeEndian.AppendUint16(m.b, typ|nlaFNested)
	return start
}

func (m *msg) endNest(start int) {
	binary.NativeEndian.PutUint16(m.b[start:], uint16(len(m.b)-start))
}

func (m *msg) u16(typ, v uint16) { m.attr(typ, binary.NativeEndian.AppendUint16(nil, v)) }
func (m *msg) u32(typ uint16, v uint32) {
	m.attr(typ, binary.NativeEndian.AppendUint32(nil, v))
}
func (m *msg) be16(typ, v uint16) { m.attr(typ, binary.BigEndian.AppendUint16(nil, v)) }

// serviceID appends the attributes that identify an IPv4 TCP service.
func (m *msg) serviceID(s *Service) {
	m.u16(svcAttrAF, unix.AF_INET)
	m.u16(svcAttrProtocol, unix.IPPROTO_TCP)
	var a [16]byte // union nf_inet_addr: IPv4 in the first 4 bytes
	copy(a[:], s.Addr.AsSlice())
	m.attr(svcAttrAddr, a[:])
	m.be16(svcAttrPort, s.Port)
}

// attrs iterates over the attributes in b (type with the nested/byte-order flags masked off, value).
func attrs(b []byte) func(yield func(uint16, []byte) bool) {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint16(b))
			typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
			if l < 4 || l > len(b) {
				fmt.Fprintf(os.Stderr, "raw: bad attribute length %d\n", l)
				return
			}
			if !yield(typ, b[4:l]) {
				return
			}
			b = b[min(align4(l), len(b)):]
		}
	}
}
