package gnl

import (
	"testing"
)

// FuzzMessages feeds arbitrary datagrams to the message splitter and the ACK decoder, which
// see every byte the kernel (or anything on the socket) sends.
func FuzzMessages(f *testing.F) {
	ack := appendHeader(nil, typeError, flagCapped|flagAckTLVs, 7, 1, 0, 0)[:nlHdrLen]
	ack = append(ack, 0xfe, 0xff, 0xff, 0xff) // -2
	ack = append(ack, make([]byte, nlHdrLen)...)
	ack, _ = AppendAttr(ack, extAckMsg, []byte("no such thing\x00"))
	finishMessage(ack, 0)
	f.Add(ack)
	done := appendHeader(nil, typeDone, flagMulti, 7, 1, 0, 0)[:nlHdrLen]
	done = append(done, 0, 0, 0, 0)
	finishMessage(done, 0)
	f.Add(append(append([]byte(nil), ack...), done...))
	f.Add([]byte{20, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			m, rest, err := nextMessage(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatal("nextMessage did not advance")
			}
			b = rest
			if m.typ == typeError || m.typ == typeDone {
				_, _, _, _ = ackError(m)
			}
		}
	})
}
