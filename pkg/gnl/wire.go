package gnl

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// Netlink message constants (linux/netlink.h), spelled out so the codec builds on every OS.
const (
	nlHdrLen   = 16
	genlHdrLen = 4

	typeNoop  = 0x1
	typeError = 0x2
	typeDone  = 0x3

	flagRequest  = 0x1
	flagMulti    = 0x2
	flagAck      = 0x4
	flagDumpIntr = 0x10
	flagDump     = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	flagCapped   = 0x100
	flagAckTLVs  = 0x200

	extAckMsg      = 1
	extAckOffset   = 2
	extAckMissType = 5
)

// message is one received netlink message; data aliases the receive buffer.
type message struct {
	typ   uint16
	flags uint16
	seq   uint32
	pid   uint32
	data  []byte
}

// nextMessage splits the first message off a datagram.
func nextMessage(b []byte) (message, []byte, error) {
	if len(b) < nlHdrLen {
		return message{}, nil, fmt.Errorf("%w: %d bytes, shorter than a netlink header", ErrMalformed, len(b))
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < nlHdrLen || l > len(b) {
		return message{}, nil, fmt.Errorf("%w: message claims %d bytes, %d remain", ErrMalformed, l, len(b))
	}
	m := message{
		typ:   binary.NativeEndian.Uint16(b[hdrType:]),
		flags: binary.NativeEndian.Uint16(b[hdrFlags:]),
		seq:   binary.NativeEndian.Uint32(b[hdrSeq:]),
		pid:   binary.NativeEndian.Uint32(b[hdrPort:]),
		data:  b[nlHdrLen:l:l],
	}
	return m, b[min(align(l), len(b)):], nil
}

// Offsets of the fields of struct nlmsghdr, in the order appendHeader writes them.
const (
	hdrLen   = 0  // __u32 nlmsg_len
	hdrType  = 4  // __u16 nlmsg_type: the family id
	hdrFlags = 6  // __u16 nlmsg_flags
	hdrSeq   = 8  // __u32 nlmsg_seq
	hdrPort  = 12 // __u32 nlmsg_pid
)

// appendHeader appends a netlink and generic netlink header; finishMessage sets the length.
func appendHeader(b []byte, typ, flags uint16, seq, pid uint32, cmd, version uint8) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, pid)
	return append(b, cmd, version, 0, 0)
}

func finishMessage(b []byte, off int) {
	binary.NativeEndian.PutUint32(b[off+hdrLen:], uint32(len(b)-off))
}

// patchHeader sets the header fields of the message at the start of b that a batch knows only
// when it sends it: the family id (resolved on the connection), the flags (only a window's last
// request asks for an acknowledgement), the sequence number and the port id.
func patchHeader(b []byte, typ, flags uint16, seq, pid uint32) {
	binary.NativeEndian.PutUint16(b[hdrType:], typ)
	binary.NativeEndian.PutUint16(b[hdrFlags:], flags)
	binary.NativeEndian.PutUint32(b[hdrSeq:], seq)
	binary.NativeEndian.PutUint32(b[hdrPort:], pid)
}

// ackError decodes the payload of an NLMSG_ERROR (or of an NLMSG_DONE, which carries an errno
// at the end of a failed dump) into an errno and the extended-ACK fields.
func ackError(m message) (errno syscall.Errno, msg string, off int, err error) {
	if len(m.data) < 4 {
		if m.typ == typeDone {
			return 0, "", 0, nil
		}
		return 0, "", 0, fmt.Errorf("%w: error message of %d bytes", ErrMalformed, len(m.data))
	}
	code := int32(binary.NativeEndian.Uint32(m.data[0:4]))
	if code < 0 {
		errno = syscall.Errno(-code)
	}
	if m.flags&flagAckTLVs == 0 {
		return errno, "", 0, nil
	}
	tlv := m.data[4:]
	if m.typ == typeError {
		// The original request header follows the errno; without NLM_F_CAPPED its payload too.
		if len(tlv) < nlHdrLen {
			return errno, "", 0, nil
		}
		skip := nlHdrLen
		if m.flags&flagCapped == 0 {
			skip = int(binary.NativeEndian.Uint32(tlv[0:4]))
		}
		if skip > len(tlv) || skip < nlHdrLen {
			return errno, "", 0, nil
		}
		tlv = tlv[min(align(skip), len(tlv)):]
	}
	it := attrIter{b: tlv}
	for it.next() {
		switch it.a.Type {
		case extAckMsg:
			msg = string(trimNUL(it.a.Data))
		case extAckOffset:
			if len(it.a.Data) == 4 {
				off = int(binary.NativeEndian.Uint32(it.a.Data))
			}
		case extAckMissType:
			if len(it.a.Data) == 4 && msg == "" {
				msg = fmt.Sprintf("missing attribute %d", binary.NativeEndian.Uint32(it.a.Data))
			}
		}
	}
	return errno, msg, off, nil
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
