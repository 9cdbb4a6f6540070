package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// TableName is the agent's nftables table, of family inet.
const TableName = "kubelvs"

// CtMark is the conntrack mark bit the input chain sets on new connections to a served VIP
// and the postrouting chain tests before masquerading; other bits of the mark are kept.
const CtMark = 0x04000000

// The table's sets and chains.
const (
	setVIPs4   = "vips4"
	setVIPs6   = "vips6"
	setPorts4  = "ports4"
	setPorts6  = "ports6"
	setNoMasq4 = "nomasq4"
	setNoMasq6 = "nomasq6"

	chainInput       = "input"
	chainVIP4        = "vip4"
	chainVIP6        = "vip6"
	chainPostrouting = "postrouting"
)

// The 32-bit registers a concatenation is loaded into (NFT_REG32_00 is 8; NFT_REG_1, the
// 128-bit register 1, is 8 to 11).
const reg1 = unix.NFT_REG_1

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// tableSets returns the table's sets, in the order they are added.
func tableSets(t *nftables.Table) []*nftables.Set {
	port4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	port6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	return []*nftables.Set{
		{Table: t, Name: setVIPs4, KeyType: nftables.TypeIPAddr},
		{Table: t, Name: setVIPs6, KeyType: nftables.TypeIP6Addr},
		{Table: t, Name: setPorts4, KeyType: port4, Concatenation: true},
		{Table: t, Name: setPorts6, KeyType: port6, Concatenation: true},
		{Table: t, Name: setNoMasq4, KeyType: nftables.TypeIPAddr, Interval: true},
		{Table: t, Name: setNoMasq6, KeyType: nftables.TypeIP6Addr, Interval: true},
	}
}

// tableChains returns the table's chains.
func tableChains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{
		// Before IPVS (its LOCAL_IN hooks are at priority 98 and 99): a packet dropped here
		// never reaches a service or a host socket.
		{Table: t, Name: chainInput, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput,
			Priority: nftables.ChainPriorityFilter, Policy: &accept},
		{Table: t, Name: chainVIP4},
		{Table: t, Name: chainVIP6},
		{Table: t, Name: chainPostrouting, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting,
			Priority: nftables.ChainPriorityNATSource, Policy: &accept},
	}
}

func nfproto(family byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{family}},
	}
}

func verdict(k expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: k, Chain: chain}
}

// daddr loads the destination address of the packet (offset 16 in IPv4, 24 in IPv6).
func daddr(v6 bool, r uint32) *expr.Payload {
	if v6 {
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}
	}
	return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

// tableRules returns the rules of each chain, keyed by chain name, given the table's sets.
func tableRules(t *nftables.Table, chains []*nftables.Chain, sets map[string]*nftables.Set) [][]*nftables.Rule {
	rule := func(c *nftables.Chain, e ...expr.Any) *nftables.Rule {
		return &nftables.Rule{Table: t, Chain: c, Exprs: e}
	}
	lookup := func(set string) *expr.Lookup {
		return &expr.Lookup{SourceRegister: reg1, SetName: set, SetID: sets[set].ID}
	}
	notIn := func(set string) *expr.Lookup {
		l := lookup(set)
		l.Invert = true
		return l
	}
	input, vip4, vip6, post := chains[0], chains[1], chains[2], chains[3]
	ctEstablished := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		verdict(expr.VerdictAccept, ""),
	}
	vipChain := func(c *nftables.Chain, family byte, v6 bool, icmp byte, ports string) []*nftables.Rule {
		// The port and protocol go in 32-bit registers after the address (1 of 4 or 4 of 4).
		next := uint32(9)
		if v6 {
			next = 12
		}
		served := append(nfproto(family), daddr(v6, reg1), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
			&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			lookup(ports),
			// ct mark |= CtMark: the postrouting chain knows the connection is to a VIP.
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(^uint32(CtMark)), Xor: binaryutil.NativeEndian.PutUint32(CtMark)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			verdict(expr.VerdictAccept, ""))
		return []*nftables.Rule{
			// ICMP to a VIP is answered (ping, and path MTU discovery must keep working).
			rule(c, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{icmp}}, verdict(expr.VerdictAccept, "")),
			// Replies to connections the node opened from a VIP, and connections accepted
			// before their port went.
			rule(c, ctEstablished...),
			rule(c, served...),
			// The same without the mark, for packets without a conntrack entry (invalid for
			// conntrack, such as the client's ACKs of a direct-routed connection whose replies
			// the director never sees): loading their ct mark ends the rule above.
			rule(c, append(slices.Clip(served[:len(served)-4]), verdict(expr.VerdictAccept, ""))...),
			// Any other port or protocol of a VIP: kubernetes#72236's hole, closed.
			rule(c, &expr.Counter{}, verdict(expr.VerdictDrop, "")),
		}
	}
	// Connections marked in the input chain (new connections to a served VIP) whose packets
	// leave for an address that is neither a VIP nor in the node's prefixes not masqueraded:
	// IPVS rewrote their destination to a remote real server (Masquerade forwarding). Direct
	// routing keeps the VIP as the destination, and a tunnel's packet leaves without the
	// connection's conntrack entry (IPVS resets it), so neither is source-NATed. Only a
	// connection's first packet meets a NAT chain.
	masq := func(family byte, v6 bool, vips, noMasq string) *nftables.Rule {
		e := nfproto(family)
		e = append(e,
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(CtMark), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
			daddr(v6, reg1), notIn(vips), notIn(noMasq), &expr.Counter{}, &expr.Masq{})
		return rule(post, e...)
	}
	return [][]*nftables.Rule{
		{
			rule(input, append(nfproto(unix.NFPROTO_IPV4), daddr(false, reg1), lookup(setVIPs4), verdict(expr.VerdictJump, chainVIP4))...),
			rule(input, append(nfproto(unix.NFPROTO_IPV6), daddr(true, reg1), lookup(setVIPs6), verdict(expr.VerdictJump, chainVIP6))...),
		},
		vipChain(vip4, unix.NFPROTO_IPV4, false, unix.IPPROTO_ICMP, setPorts4),
		vipChain(vip6, unix.NFPROTO_IPV6, true, unix.IPPROTO_ICMPV6, setPorts6),
		{masq(unix.NFPROTO_IPV4, false, setVIPs4, setNoMasq4), masq(unix.NFPROTO_IPV6, true, setVIPs6, setNoMasq6)},
	}
}

// addTable queues the whole table, empty sets and all, on c.
func addTable(c *nftables.Conn) (map[string]*nftables.Set, error) {
	t := c.AddTable(table())
	sets := map[string]*nftables.Set{}
	for _, s := range tableSets(t) {
		if err := c.AddSet(s, nil); err != nil {
			return nil, fmt.Errorf("dataplane: nftables set %s: %w", s.Name, err)
		}
		sets[s.Name] = s
	}
	chains := tableChains(t)
	for _, ch := range chains {
		c.AddChain(ch)
	}
	for _, rules := range tableRules(t, chains, sets) {
		for _, r := range rules {
			c.AddRule(r)
		}
	}
	return sets, nil
}

// Set element keys: each field of a concatenation takes a multiple of 4 bytes.
func addrKey(a netip.Addr) []byte { return a.AsSlice() }

func portKey(p Port) []byte {
	k := addrKey(p.VIP)
	k = append(k, byte(p.Protocol), 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, p.Port)
	return append(k, 0, 0)
}

// parse functions invert the keys (for reading back what the table holds).
func parseAddrKey(b []byte) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}, fmt.Errorf("dataplane: nftables element of %d bytes is no address", len(b))
	}
	return a, nil
}

func parsePortKey(b []byte) (Port, error) {
	n := len(b) - 8
	if n != 4 && n != 16 {
		return Port{}, fmt.Errorf("dataplane: nftables port element of %d bytes", len(b))
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return Port{VIP: a, Protocol: lvs.Protocol(b[n]), Port: binary.BigEndian.Uint16(b[n+4:])}, nil
}

// queueDelta queues the element changes of d on c, at most chunk elements a message.
func queueDelta(c *nftables.Conn, sets map[string]*nftables.Set, d *Delta) error {
	type batch struct {
		set   string
		add   bool
		elems []nftables.SetElement
	}
	var batches []batch
	split := func(add bool, e4, e6 []nftables.SetElement, s4, s6 string) {
		batches = append(batches, batch{s4, add, e4}, batch{s6, add, e6})
	}
	vipElem := func(a netip.Addr) nftables.SetElement { return nftables.SetElement{Key: addrKey(a)} }
	portElem := func(p Port) nftables.SetElement { return nftables.SetElement{Key: portKey(p)} }
	vipIs4 := func(a netip.Addr) bool { return a.Is4() }
	portIs4 := func(p Port) bool { return p.VIP.Is4() }
	boundIs4 := func(b Bound) bool { return b.Addr.Is4() }
	// Deletions first, the unmasqueraded ranges and ports before VIPs; additions in the other
	// order.
	n4, n6 := elemsOf(d.DelNoMasq, boundElem, boundIs4)
	split(false, n4, n6, setNoMasq4, setNoMasq6)
	p4, p6 := elemsOf(d.DelPorts, portElem, portIs4)
	split(false, p4, p6, setPorts4, setPorts6)
	v4, v6 := elemsOf(d.DelVIPs, vipElem, vipIs4)
	split(false, v4, v6, setVIPs4, setVIPs6)
	v4, v6 = elemsOf(d.AddVIPs, vipElem, vipIs4)
	split(true, v4, v6, setVIPs4, setVIPs6)
	p4, p6 = elemsOf(d.AddPorts, portElem, portIs4)
	split(true, p4, p6, setPorts4, setPorts6)
	n4, n6 = elemsOf(d.AddNoMasq, boundElem, boundIs4)
	split(true, n4, n6, setNoMasq4, setNoMasq6)
	const chunk = 1024
	for _, b := range batches {
		for elems := range slices.Chunk(b.elems, chunk) {
			var err error
			if b.add {
				err = c.SetAddElements(sets[b.set], elems)
			} else {
				err = c.SetDeleteElements(sets[b.set], elems)
			}
			if err != nil {
				return fmt.Errorf("dataplane: nftables set %s: %w", b.set, err)
			}
		}
	}
	return nil
}

func boundElem(b Bound) nftables.SetElement {
	return nftables.SetElement{Key: addrKey(b.Addr), IntervalEnd: b.End}
}

func elemsOf[T any](items []T, elem func(T) nftables.SetElement, is4 func(T) bool) (e4, e6 []nftables.SetElement) {
	for _, it := range items {
		if is4(it) {
			e4 = append(e4, elem(it))
		} else {
			e6 = append(e6, elem(it))
		}
	}
	return e4, e6
}

// errTableShape: the table exists but is not the one this agent writes (an older version's,
// or changed by hand).
var errTableShape = errors.New("dataplane: the nftables table differs from the agent's")

// readTable reads the elements of the table's sets (their dumps through raw, a nfnetlink
// socket of the same namespace); ok is false when there is no table. It fails with
// errTableShape when the table's sets or chains are not the agent's.
func readTable(c *nftables.Conn, raw *netlink.Conn) (Elements, map[string]*nftables.Set, bool, error) {
	el := NewElements()
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return el, nil, false, nil
		}
		return el, nil, false, fmt.Errorf("dataplane: list nftables table %s: %w", TableName, err)
	}
	got, err := c.GetSets(t)
	if err != nil {
		return el, nil, true, fmt.Errorf("dataplane: list nftables sets: %w", err)
	}
	sets := map[string]*nftables.Set{}
	for _, s := range got {
		sets[s.Name] = s
	}
	for _, w := range tableSets(t) {
		s := sets[w.Name]
		if s == nil || s.KeyType.Bytes != w.KeyType.Bytes || s.Interval != w.Interval || len(sets) != len(tableSets(t)) {
			return el, nil, true, fmt.Errorf("%w: set %s", errTableShape, w.Name)
		}
	}
	if err := checkChains(c, t); err != nil {
		return el, nil, true, err
	}
	if err := readElements(raw, &el); err != nil {
		return NewElements(), nil, true, err
	}
	return el, sets, true, nil
}

func checkChains(c *nftables.Conn, t *nftables.Table) error {
	chains := tableChains(t)
	rules := tableRules(t, chains, map[string]*nftables.Set{
		setVIPs4: {}, setVIPs6: {}, setPorts4: {}, setPorts6: {}, setNoMasq4: {}, setNoMasq6: {}})
	listed, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("dataplane: list nftables chains: %w", err)
	}
	have := map[string]bool{}
	for _, ch := range listed {
		if ch.Table != nil && ch.Table.Name == TableName {
			have[ch.Name] = true
		}
	}
	for i, ch := range chains {
		if !have[ch.Name] {
			return fmt.Errorf("%w: no chain %s", errTableShape, ch.Name)
		}
		got, err := c.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("%w: chain %s: %w", errTableShape, ch.Name, err)
		}
		if len(got) != len(rules[i]) {
			return fmt.Errorf("%w: chain %s has %d rules, want %d", errTableShape, ch.Name, len(got), len(rules[i]))
		}
	}
	return nil
}

func readElements(c *netlink.Conn, el *Elements) error {
	for _, name := range []string{setVIPs4, setVIPs6, setPorts4, setPorts6, setNoMasq4, setNoMasq6} {
		var each func(key []byte, flags uint32) error
		switch name {
		case setVIPs4, setVIPs6:
			each = func(k []byte, _ uint32) error {
				a, err := parseAddrKey(k)
				if err == nil {
					el.VIPs[a] = struct{}{}
				}
				return err
			}
		case setPorts4, setPorts6:
			each = func(k []byte, _ uint32) error {
				p, err := parsePortKey(k)
				if err == nil {
					el.Ports[p] = struct{}{}
				}
				return err
			}
		default:
			each = func(k []byte, flags uint32) error {
				a, err := parseAddrKey(k)
				if err == nil {
					el.NoMasq[Bound{Addr: a, End: flags&unix.NFT_SET_ELEM_INTERVAL_END != 0}] = struct{}{}
				}
				return err
			}
		}
		if err := dumpSetKeys(c, name, each); err != nil {
			return err
		}
	}
	return nil
}
