package gnl

import (
	"encoding/binary"
	"fmt"
)

// Netlink attribute header flags carried in the high bits of nla_type.
const (
	// FlagNested (NLA_F_NESTED) marks an attribute whose payload is itself a list of attributes.
	FlagNested uint16 = 1 << 15
	// FlagNetByteOrder (NLA_F_NET_BYTEORDER) marks a payload in network byte order.
	FlagNetByteOrder uint16 = 1 << 14
	// typeMask keeps the attribute number and drops both flags.
	typeMask = ^(FlagNested | FlagNetByteOrder)
)

const (
	attrHeaderLen = 4
	attrAlignTo   = 4
	maxAttrLen    = 0xffff
)

func align(n int) int { return (n + attrAlignTo - 1) &^ (attrAlignTo - 1) }

// Attr is one raw attribute: an attribute the declaration does not know, kept as it arrived
// (decode is lenient), or the unit of iteration in [Attrs].
type Attr struct {
	// Type is the attribute number with NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off.
	Type uint16
	// Flags holds the NLA_F_* bits the sender set.
	Flags uint16
	// Data is the payload, without header or padding.
	Data []byte
}

// Nested reports whether the sender flagged the attribute as nested.
func (a Attr) Nested() bool { return a.Flags&FlagNested != 0 }

// attrIter walks a buffer of attributes without allocating. It stops at the first malformed
// attribute and keeps the error.
type attrIter struct {
	b   []byte
	off int // offset of the current attribute in the original buffer, for errors
	a   Attr
	err error
}

func (it *attrIter) next() bool {
	if it.err != nil || len(it.b) == 0 {
		return false
	}
	if len(it.b) < attrHeaderLen {
		it.err = fmt.Errorf("%w: %d trailing bytes at offset %d, shorter than an attribute header", ErrMalformed, len(it.b), it.off)
		return false
	}
	l := int(binary.NativeEndian.Uint16(it.b[0:2]))
	t := binary.NativeEndian.Uint16(it.b[2:4])
	if l < attrHeaderLen || l > len(it.b) {
		it.err = fmt.Errorf("%w: attribute %d at offset %d claims length %d, %d bytes remain", ErrMalformed, t&typeMask, it.off, l, len(it.b))
		return false
	}
	it.a = Attr{Type: t & typeMask, Flags: t &^ typeMask, Data: it.b[attrHeaderLen:l:l]}
	n := min(align(l), len(it.b)) // the last attribute may come without its padding
	it.b = it.b[n:]
	it.off += n
	return true
}

// Attrs decodes a buffer of attributes into raw form, leniently: flags are masked from the type,
// the last attribute may lack its padding. Malformed input gives an error wrapping
// [ErrMalformed], never a panic. It is for tools and tests; typed code uses [Unmarshal].
func Attrs(b []byte) ([]Attr, error) {
	var out []Attr
	it := attrIter{b: b}
	for it.next() {
		out = append(out, it.a)
	}
	return out, it.err
}

// appendAttrHeader appends a header for an attribute whose payload length is filled in later by
// finishAttr; it returns the offset of the header.
func appendAttrHeader(b []byte, typ uint16) ([]byte, int) {
	off := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return b, off
}

// finishAttr writes the length of the attribute started at off and pads it.
func finishAttr(b []byte, off int) ([]byte, error) {
	l := len(b) - off
	if l > maxAttrLen {
		return b, fmt.Errorf("%w: attribute %d is %d bytes, netlink allows %d", ErrTooLarge,
			binary.NativeEndian.Uint16(b[off+2:])&typeMask, l, maxAttrLen)
	}
	binary.NativeEndian.PutUint16(b[off:], uint16(l))
	for range align(l) - l {
		b = append(b, 0)
	}
	return b, nil
}

// AppendAttr appends one attribute with a raw payload, padded; it is the building block for
// hand-made messages in tests and tools. typ may carry NLA_F_* flags.
func AppendAttr(b []byte, typ uint16, payload []byte) ([]byte, error) {
	b, off := appendAttrHeader(b, typ)
	b = append(b, payload...)
	return finishAttr(b, off)
}

// AttrIter walks a buffer of attributes without allocating, with the decoder's lenient rules
// (flags masked from the type, the last attribute's padding optional) and its errors (wrapping
// [ErrMalformed]). It is for hand-written decoders of hot paths; typed code uses [Unmarshal].
//
//	it := gnl.NewAttrIter(b)
//	for it.Next() {
//		a := it.Attr()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type AttrIter struct{ it attrIter }

// NewAttrIter starts a walk of the attributes in b.
func NewAttrIter(b []byte) AttrIter { return AttrIter{it: attrIter{b: b}} }

// Next advances to the next attribute; it is false at the end or at the first malformed one.
func (a *AttrIter) Next() bool { return a.it.next() }

// Attr is the current attribute; its Data aliases the buffer.
func (a *AttrIter) Attr() Attr { return a.it.a }

// Err is the error that stopped the walk, if any.
func (a *AttrIter) Err() error { return a.it.err }
