package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nftables ruleset generation: the kernel adds one to it with every committed
// transaction in the network namespace, whoever commits. When it is what it was after the
// agent's own last transaction, nobody has changed any table since, and an audit need not
// read the table's elements back (at 10,000 backends, most of an audit's time). Anything else
// (another program's commit, or one between the agent's and its reading the number) makes the
// next audit read the table.

// errNoGen: the kernel's answer held no generation.
var errNoGen = errors.New("dataplane: the kernel's NEWGEN answer has no NFTA_GEN_ID")

// genRequestType is NFT_MSG_GETGEN in the nftables subsystem of nfnetlink.
const genRequestType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN)

// rulesetGen asks the kernel for the ruleset generation.
func rulesetGen(c *netlink.Conn) (uint32, error) {
	// struct nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: genRequestType, Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("dataplane: get the nftables generation: %w", err)
	}
	if len(msgs) != 1 {
		return 0, fmt.Errorf("dataplane: get the nftables generation: %d answers, want 1", len(msgs))
	}
	return parseGen(msgs[0].Data)
}

// parseGen decodes an NFT_MSG_NEWGEN message's payload: struct nfgenmsg, then attributes
// (nftables' integers are big-endian).
func parseGen(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("dataplane: NEWGEN message of %d bytes: %w", len(b), errNoGen)
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return 0, fmt.Errorf("dataplane: NEWGEN attributes: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var gen uint32
	found := false
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			if len(ad.Bytes()) != 4 {
				return 0, fmt.Errorf("dataplane: NFTA_GEN_ID of %d bytes: %w", len(ad.Bytes()), errNoGen)
			}
			gen, found = ad.Uint32(), true
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("dataplane: NEWGEN attributes: %w", err)
	}
	if !found {
		return 0, errNoGen
	}
	return gen, nil
}
