package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The table's elements are read back (at start, and at an audit after someone's commit) by
// a dump of each set decoded here to its keys only: google/nftables' GetSetElements builds a
// SetElement for every element (its flags, timeouts, expressions, a nested decoder each), which
// was 8 s of a restarted agent's CPU at 120,000 elements in the emulated VM.

// errSetElem is matched by the error of a malformed set element dump.
var errSetElem = errors.New("dataplane: malformed nftables set element message")

// getSetElemType is NFT_MSG_GETSETELEM in the nftables subsystem of nfnetlink.
const getSetElemType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM)

// dumpSetKeys calls each with the key and flags (NFT_SET_ELEM_INTERVAL_END) of every element
// of the table's set (the bytes are the message's: each must copy what it keeps).
func dumpSetKeys(c *netlink.Conn, set string, each func(key []byte, flags uint32) error) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("dataplane: encode the dump of nftables set %s: %w", set, err)
	}
	// struct nfgenmsg: the table's family, NFNETLINK_V0, res_id 0.
	data := append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...)
	msgs, err := c.Execute(netlink.Message{Header: netlink.Header{Type: getSetElemType, Flags: netlink.Request | netlink.Dump}, Data: data})
	if err != nil {
		return fmt.Errorf("dataplane: list nftables set %s: %w", set, err)
	}
	for _, m := range msgs {
		if err := parseSetElems(m.Data, each); err != nil {
			return fmt.Errorf("dataplane: list nftables set %s: %w", set, err)
		}
	}
	return nil
}

// parseSetElems decodes one NFT_MSG_NEWSETELEM payload: struct nfgenmsg, then
// NFTA_SET_ELEM_LIST_ELEMENTS holding NFTA_LIST_ELEM entries, each with NFTA_SET_ELEM_KEY
// holding NFTA_DATA_VALUE, and NFTA_SET_ELEM_FLAGS (big-endian; 0 when absent). Other
// attributes are skipped.
func parseSetElems(b []byte, each func(key []byte, flags uint32) error) error {
	if len(b) < 4 {
		return fmt.Errorf("%w: %d bytes", errSetElem, len(b))
	}
	return walkType(b[4:], unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list []byte) error {
		return walkType(list, unix.NFTA_LIST_ELEM, func(elem []byte) error {
			var key []byte
			var flags uint32
			found := false
			err := walkAttrs(elem, func(typ uint16, v []byte) error {
				switch typ {
				case unix.NFTA_SET_ELEM_KEY:
					return walkType(v, unix.NFTA_DATA_VALUE, func(v []byte) error {
						key, found = v, true
						return nil
					})
				case unix.NFTA_SET_ELEM_FLAGS:
					if len(v) != 4 {
						return fmt.Errorf("%w: element flags of %d bytes", errSetElem, len(v))
					}
					flags = binary.BigEndian.Uint32(v)
				}
				return nil
			})
			switch {
			case err != nil:
				return err
			case !found:
				return fmt.Errorf("%w: an element without a key", errSetElem)
			}
			return each(key, flags)
		})
	})
}

// walkType calls f with the value of each attribute of type typ in b.
func walkType(b []byte, typ uint16, f func(v []byte) error) error {
	return walkAttrs(b, func(t uint16, v []byte) error {
		if t != typ {
			return nil
		}
		return f(v)
	})
}

// walkAttrs calls f with the type (without the nested and byte-order flags) and value of each
// netlink attribute in b.
func walkAttrs(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.NLA_HDRLEN {
			return fmt.Errorf("%w: %d bytes left after the last attribute", errSetElem, len(b))
		}
		n := int(binary.NativeEndian.Uint16(b))
		if n < unix.NLA_HDRLEN || n > len(b) {
			return fmt.Errorf("%w: an attribute of length %d in %d bytes", errSetElem, n, len(b))
		}
		if err := f(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[unix.NLA_HDRLEN:n]); err != nil {
			return err
		}
		b = b[min(nlaAlign(n), len(b)):]
	}
	return nil
}

// nlaTypeMask clears an attribute type's NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }
