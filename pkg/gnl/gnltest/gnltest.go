// Package gnltest is an in-process generic netlink kernel for unit tests of family
// implementations built on package gnl. It speaks the netlink protocol to a real [gnl.Conn]:
// requests arrive as bytes, replies leave as datagrams with the kernel's framing (one
// acknowledgement per datagram, dumps split across several datagrams and finished by
// NLMSG_DONE, extended-ACK error messages, NLMSG_NOOP acknowledged), nlctrl answers family
// lookups, and faults can be injected: kernel errors, lost replies, interrupted dumps,
// receive-buffer overflow (ENOBUFS), unsolicited messages.
package gnltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/kubelvs/kubelvs/pkg/gnl"
)

// Request is one request as a family handler sees it.
type Request struct {
	Type     uint16
	Flags    uint16
	Sequence uint32
	PortID   uint32
	Cmd      uint8
	Version  uint8
	// Attrs is the attribute payload after the generic netlink header; decode it with
	// gnl.Unmarshal.
	Attrs []byte
}

// Dump reports whether the request asked for a dump.
func (r Request) Dump() bool { return r.Flags&nlmFDump == nlmFDump }

// Message is one reply message a handler returns.
type Message struct {
	Cmd   uint8
	Attrs []byte
	// Flags are extra netlink header flags, such as NLM_F_DUMP_INTR (0x10).
	Flags uint16
	// PortID, when non-zero, overrides the port id in the header (default: the requester's).
	PortID uint32
}

// Reply builds a reply message from an attribute-set struct.
func Reply(cmd uint8, v any) (Message, error) {
	b, err := gnl.Marshal(v)
	return Message{Cmd: cmd, Attrs: b}, err
}

// Error is a kernel error with an extended-ACK message; handlers may also return a bare
// syscall.Errno.
type Error struct {
	Errno   syscall.Errno
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%v: %s", e.Errno, e.Message) }

// ErrNoReply makes the kernel send nothing at all for a request: the reply is lost.
var ErrNoReply = errors.New("gnltest: drop the reply")

// Handler answers one request of a family: the messages to send back, and an error (an
// *Error, a syscall.Errno, or ErrNoReply). For a dump, the messages are sent as a multipart
// reply and the error, if any, in its NLMSG_DONE.
type Handler func(req Request) ([]Message, error)

// Family is a family the fake kernel serves.
type Family struct {
	Name    string
	ID      uint16 // assigned when zero
	Version uint32
	MaxAttr uint32
	Ops     []gnl.Op
	Groups  []gnl.McastGrp
	Handle  Handler
}

// Kernel is a fake generic netlink kernel. The zero value has nlctrl only; add families with
// Register. It is safe for concurrent use.
type Kernel struct {
	// DumpBatch is how many messages of a dump go in one datagram (default 2), so that dumps
	// are read in several reads as from the real kernel.
	DumpBatch int
	// ReceiveBuffer, when non-zero, is how many bytes of datagrams one connection may have
	// queued; past it the kernel drops datagrams and the next receive reports ENOBUFS. Each
	// datagram is accounted at its length plus 512 bytes, roughly as skb truesize.
	ReceiveBuffer int
	// DatagramsPerRead is how many queued datagrams one Receive returns at most (default 1),
	// one after another, each padded to 4 bytes, as gnl's socket transport reads with recvmmsg.
	DatagramsPerRead int

	mu       sync.Mutex
	families []*Family
	nextID   uint16
	nextPort uint32
	conns    map[uint32]*transport
	requests int
}

const (
	nlHdrLen   = 16
	genlHdrLen = 4
	nlmFMulti  = 0x2
	nlmFAck    = 0x4
	nlmFDump   = 0x300
	nlmFCapped = 0x100
	nlmFTLVs   = 0x200
	typeNoop   = 1
	typeError  = 2
	typeDone   = 3
	ctrlID     = 0x10
	overhead   = 512
)

// Register adds a family and returns its id.
func (k *Kernel) Register(f *Family) uint16 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f.ID == 0 {
		if k.nextID < 0x20 {
			k.nextID = 0x20
		}
		k.nextID++
		f.ID = k.nextID
	}
	k.families = append(k.families, f)
	return f.ID
}

// Reload registers the family of that name again under a new id, as the kernel does when the
// family's module is unloaded and loaded again: requests with the old id get ENOENT. It returns
// the new id.
func (k *Kernel) Reload(name string) (uint16, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range k.families {
		if f.Name == name {
			k.nextID = max(k.nextID, f.ID) + 1
			f.ID = k.nextID
			return f.ID, nil
		}
	}
	return 0, fmt.Errorf("gnltest: no family %q", name)
}

// Unregister removes the family of that name, as unloading its module does.
func (k *Kernel) Unregister(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.families = slices.DeleteFunc(k.families, func(f *Family) bool { return f.Name == name })
}

// Requests is how many requests the kernel has handled, NOOPs and lookups included.
func (k *Kernel) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// Dial opens a connection to the fake kernel.
func (k *Kernel) Dial(cfg *gnl.Config) *gnl.Conn {
	k.mu.Lock()
	if k.conns == nil {
		k.conns = map[uint32]*transport{}
	}
	k.nextPort++
	t := &transport{k: k, port: 1000 + k.nextPort, wake: make(chan struct{}, 1)}
	k.conns[t.port] = t
	k.mu.Unlock()
	return gnl.NewConn(t, cfg)
}

// Send queues a message to the connection with the given port id, as the kernel sends
// unsolicited messages (a taskstats exit record: port id 0 in the header, any sequence number).
// A stale reply can be simulated with the connection's port id in m.PortID and an old seq.
func (k *Kernel) Send(port uint32, familyID uint16, seq uint32, m Message) error {
	k.mu.Lock()
	t := k.conns[port]
	k.mu.Unlock()
	if t == nil {
		return fmt.Errorf("gnltest: no connection with port %d", port)
	}
	t.queue(message(nil, familyID, m.Flags, seq, m.PortID, m.Cmd, m.Attrs))
	return nil
}

// SendAck queues an acknowledgement (NLMSG_ERROR, errno from err, nil for success) with the
// given sequence number to the connection with the given port id, as the late answer to a
// request that was given up on. Like the kernel's, it carries the connection's port id.
func (k *Kernel) SendAck(port, seq uint32, err error) error {
	k.mu.Lock()
	t := k.conns[port]
	k.mu.Unlock()
	if t == nil {
		return fmt.Errorf("gnltest: no connection with port %d", port)
	}
	hdr := appendMsg(nil, typeNoop, 0, seq, port, nil) // stands for the request's header
	t.queue(ack(Request{Sequence: seq, PortID: port}, hdr, err))
	return nil
}

// Multicast sends an unsolicited message to every connection that joined the group.
func (k *Kernel) Multicast(group uint32, familyID uint16, m Message) {
	k.mu.Lock()
	var to []*transport
	for _, t := range k.conns {
		t.mu.Lock()
		if t.groups[group] {
			to = append(to, t)
		}
		t.mu.Unlock()
	}
	k.mu.Unlock()
	for _, t := range to {
		t.queue(message(nil, familyID, m.Flags, 0, 0, m.Cmd, m.Attrs))
	}
}

func (k *Kernel) family(id uint16, name string) *Family {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range k.families {
		if (id != 0 && f.ID == id) || (name != "" && f.Name == name) {
			return f
		}
	}
	return nil
}

// handle processes the requests of one sendmsg, in order, as the kernel does.
func (k *Kernel) handle(t *transport, b []byte) error {
	for len(b) > 0 {
		if len(b) < nlHdrLen {
			return syscall.EINVAL
		}
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlHdrLen || l > len(b) {
			return syscall.EINVAL
		}
		hdr := b[:l]
		b = b[min(len(b), (l+3)&^3):]
		req := Request{
			Type:     binary.NativeEndian.Uint16(hdr[4:]),
			Flags:    binary.NativeEndian.Uint16(hdr[6:]),
			Sequence: binary.NativeEndian.Uint32(hdr[8:]),
			PortID:   t.port,
		}
		k.mu.Lock()
		k.requests++
		k.mu.Unlock()
		if req.Type == typeNoop || req.Type < 0x10 {
			t.queue(ack(req, hdr, nil))
			continue
		}
		if len(hdr) < nlHdrLen+genlHdrLen {
			t.queue(ack(req, hdr, syscall.EINVAL))
			continue
		}
		req.Cmd, req.Version = hdr[16], hdr[17]
		req.Attrs = slices.Clone(hdr[nlHdrLen+genlHdrLen:])
		var (
			msgs []Message
			err  error
		)
		if req.Type == ctrlID {
			msgs, err = k.ctrl(req)
		} else if f := k.family(req.Type, ""); f == nil {
			err = syscall.ENOENT
		} else {
			msgs, err = f.Handle(req)
		}
		if errors.Is(err, ErrNoReply) {
			continue
		}
		if req.Dump() {
			k.sendDump(t, req, msgs, err)
			continue
		}
		for _, m := range msgs {
			t.queue(message(nil, req.Type, m.Flags, req.Sequence, portOf(m, t), m.Cmd, m.Attrs))
		}
		if err != nil || req.Flags&nlmFAck != 0 {
			t.queue(ack(req, hdr, err))
		}
	}
	return nil
}

func (k *Kernel) sendDump(t *transport, req Request, msgs []Message, err error) {
	batch := k.DumpBatch
	if batch <= 0 {
		batch = 2
	}
	var dg []byte
	for i, m := range msgs {
		dg = message(dg, req.Type, m.Flags|nlmFMulti, req.Sequence, portOf(m, t), m.Cmd, m.Attrs)
		if (i+1)%batch == 0 {
			t.queue(dg)
			dg = nil
		}
	}
	done := binary.NativeEndian.AppendUint32(nil, uint32(-errnoOf(err)))
	flags := uint16(nlmFMulti)
	if msg := errMessage(err); msg != "" {
		flags |= nlmFTLVs
		done = appendAttr(done, 1, append([]byte(msg), 0))
	}
	dg = appendMsg(dg, typeDone, flags, req.Sequence, t.port, done)
	t.queue(dg)
}

func (k *Kernel) ctrl(req Request) ([]Message, error) {
	var q struct {
		ID   uint16 `gnl:"1"`
		Name string `gnl:"2"`
	}
	if err := gnl.Unmarshal(req.Attrs, &q); err != nil {
		return nil, &Error{Errno: syscall.EINVAL, Message: err.Error()}
	}
	info := func(f *Family) (Message, error) {
		return Reply(1, &gnl.FamilyInfo{ID: f.ID, Name: f.Name, Version: f.Version, MaxAttr: f.MaxAttr, Ops: f.Ops, Groups: f.Groups})
	}
	if req.Dump() {
		k.mu.Lock()
		fams := slices.Clone(k.families)
		k.mu.Unlock()
		out := []Message{}
		m, _ := Reply(1, &gnl.FamilyInfo{ID: ctrlID, Name: "nlctrl", Version: 2, Ops: []gnl.Op{{ID: 3, Flags: 0xe}}})
		out = append(out, m)
		for _, f := range fams {
			m, err := info(f)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	}
	if q.Name == "nlctrl" || q.ID == ctrlID {
		m, err := Reply(1, &gnl.FamilyInfo{ID: ctrlID, Name: "nlctrl", Version: 2})
		return []Message{m}, err
	}
	f := k.family(q.ID, q.Name)
	if f == nil {
		return nil, syscall.ENOENT
	}
	m, err := info(f)
	return []Message{m}, err
}

func portOf(m Message, t *transport) uint32 {
	if m.PortID != 0 {
		return m.PortID
	}
	return t.port
}

func errnoOf(err error) int32 {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return int32(e.Errno)
	}
	var n syscall.Errno
	if errors.As(err, &n) {
		return int32(n)
	}
	return int32(syscall.EINVAL)
}

func errMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return ""
}

// ack builds an NLMSG_ERROR for a request, capped (header only) with the extended-ACK message.
func ack(req Request, hdr []byte, err error) []byte {
	p := binary.NativeEndian.AppendUint32(nil, uint32(-errnoOf(err)))
	p = append(p, hdr[:nlHdrLen]...)
	flags := uint16(nlmFCapped)
	if msg := errMessage(err); msg != "" {
		flags |= nlmFTLVs
		p = appendAttr(p, 1, append([]byte(msg), 0))
	}
	return appendMsg(nil, typeError, flags, req.Sequence, req.PortID, p)
}

func message(b []byte, typ, flags uint16, seq, port uint32, cmd uint8, attrs []byte) []byte {
	p := append([]byte{cmd, 1, 0, 0}, attrs...)
	return appendMsg(b, typ, flags, seq, port, p)
}

func appendMsg(b []byte, typ, flags uint16, seq, port uint32, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(nlHdrLen+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, port)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttr(b []byte, typ uint16, payload []byte) []byte {
	b, err := gnl.AppendAttr(b, typ, payload)
	if err != nil {
		panic(err) // extended-ACK messages are short
	}
	return b
}

// transport is one connection's socket in the fake kernel.
type transport struct {
	k    *Kernel
	port uint32
	wake chan struct{}

	mu       sync.Mutex
	q        [][]byte
	queued   int
	overflow bool
	dropped  uint32
	deadline time.Time
	closed   bool
	groups   map[uint32]bool
}

func (t *transport) JoinGroup(group uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.groups == nil {
		t.groups = map[uint32]bool{}
	}
	t.groups[group] = true
	return nil
}

func (t *transport) LeaveGroup(group uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.groups, group)
	return nil
}

func (t *transport) queue(dg []byte) {
	t.mu.Lock()
	size := len(dg) + overhead
	if t.k.ReceiveBuffer > 0 && t.queued+size > t.k.ReceiveBuffer {
		t.overflow = true
		t.dropped++
	} else {
		t.q = append(t.q, dg)
		t.queued += size
	}
	t.mu.Unlock()
	t.signal()
}

func (t *transport) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *transport) Send(b []byte) error {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return os.ErrClosed
	}
	return t.k.handle(t, b)
}

func (t *transport) Receive(b []byte) (int, error) {
	for {
		t.mu.Lock()
		switch {
		case t.closed:
			t.mu.Unlock()
			return 0, os.ErrClosed
		case t.overflow:
			t.overflow = false
			t.mu.Unlock()
			return 0, os.NewSyscallError("recvmsg", syscall.ENOBUFS)
		case len(t.q) > 0:
			dg := t.q[0]
			if len(dg) > len(b) {
				t.mu.Unlock()
				return 0, fmt.Errorf("gnltest: datagram of %d bytes, buffer %d", len(dg), len(b))
			}
			n := 0
			for k := 0; k < max(1, t.k.DatagramsPerRead) && len(t.q) > 0; k++ {
				dg := t.q[0]
				if n+len(dg) > len(b) {
					break
				}
				t.q = t.q[1:]
				t.queued -= len(dg) + overhead
				n += copy(b[n:], dg)
				for n%4 != 0 && n < len(b) {
					b[n] = 0
					n++
				}
			}
			t.mu.Unlock()
			return n, nil
		}
		d := t.deadline
		t.mu.Unlock()
		if d.IsZero() {
			<-t.wake
			continue
		}
		wait := time.Until(d)
		if wait <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		timer := time.NewTimer(wait)
		select {
		case <-t.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (t *transport) SetReadDeadline(d time.Time) error {
	t.mu.Lock()
	t.deadline = d
	t.mu.Unlock()
	t.signal()
	return nil
}

func (t *transport) PortID() uint32 { return t.port }

// Drops is how many datagrams the fake kernel dropped for this connection.
func (t *transport) Drops() (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped, true
}

func (t *transport) Buffers() (rcv, snd int) {
	rcv = t.k.ReceiveBuffer
	if rcv == 0 {
		rcv = 8 << 20
	}
	return rcv, 8 << 20
}

func (t *transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.k.mu.Lock()
	delete(t.k.conns, t.port)
	t.k.mu.Unlock()
	t.signal()
	return nil
}
