package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LinkAlias is the alias (IFLA_IFALIAS, "ip link" shows it as "alias") that marks the VIP
// interface as the agent's.
const LinkAlias = "kubelvs: VIPs of the kubelvs agent"

// RouteProtocol is the routing protocol ("proto" in "ip route", rtm_protocol) of the agent's
// VIP routes: a VIP is a route of type local in the table local through the VIP interface
// (what the kernel adds for an address, without the address), and only routes of this
// protocol on that interface are the agent's. 107 is 'k'; the kernel and the routing daemons
// in iproute2's rt_protos do not use it.
const RouteProtocol = 107

// AddrMarker is the route priority (IFA_RT_PRIORITY, "metric" in "ip addr") that, with
// IFA_F_NOPREFIXROUTE, marked the VIP addresses of agents before VIPs were routes: an agent
// replaces such addresses by routes when it starts (legacyAddresses).
const AddrMarker = 0x6b6c7673

// ErrNotOurs is matched by the error of an interface of the VIP interface's name that the
// agent did not create.
var ErrNotOurs = errors.New("dataplane: the interface exists and is not the agent's")

// link is the VIP interface through rtnetlink, and the VIPs' local routes through it.
//
// Routes, not addresses: the kernel inserts an IPv4 address by walking the interface's
// address list, so 10,000 VIPs as addresses cost O(n²) (27 s in the emulated VM where 10,000
// routes took 4 s one request at a time); a local route is a trie insert. Traffic to a VIP is
// delivered locally either way (IPVS sees it in LOCAL_IN), and with arp_ignore=1 the node
// answers ARP for neither (a route is no address of the interface asked on).
type link struct {
	c *rtnetlink.Conn
	// raw is a plain netlink socket of the same namespace for pipelined route adds (the
	// library sends one request and waits for its answer each time).
	raw   *netlink.Conn
	name  string
	index uint32
}

// addWindow is how many route adds go in one sendmsg before their ACKs are read.
const addWindow = 128

// addMany routes vips, addWindow requests per sendmsg (each still answered on its own: the
// kernel handles them in order and ACKs each in order). It returns the VIPs it routed; one
// that is local already (someone else's address or route: EEXIST) is not returned, so that
// it is never deleted. appendTo adds beside an equal route instead (a legacy address's own).
func (l *link) addMany(vips []netip.Addr, appendTo bool) ([]netip.Addr, []error) {
	flags := netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl
	if appendTo {
		flags = netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Append
	}
	var added []netip.Addr
	var errs []error
	for chunk := range slices.Chunk(vips, addWindow) {
		msgs := make([]netlink.Message, len(chunk))
		for i, a := range chunk {
			b, err := l.route(a).MarshalBinary()
			if err != nil {
				return added, append(errs, fmt.Errorf("dataplane: encode route %s: %w", a, err))
			}
			msgs[i] = netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: flags}, Data: b}
		}
		if _, err := l.raw.SendMessages(msgs); err != nil {
			return added, append(errs, fmt.Errorf("dataplane: add %d VIP routes via %s: %w", len(chunk), l.name, err))
		}
		for _, a := range chunk {
			_, err := l.raw.Receive()
			switch {
			case err == nil:
				added = append(added, a)
			case errors.Is(err, unix.EEXIST):
			default:
				errs = append(errs, fmt.Errorf("dataplane: add VIP route %s via %s: %w", a, l.name, err))
			}
		}
	}
	return added, errs
}

// find returns the index of the interface name, 0 when there is none, and whether it is a
// loopback (lo: the node's, used as it is); it fails with ErrNotOurs when the interface is
// neither a loopback nor the agent's dummy.
func (l *link) find() (uint32, bool, error) {
	links, err := l.c.Link.List()
	if err != nil {
		return 0, false, fmt.Errorf("dataplane: list links: %w", err)
	}
	for _, m := range links {
		if m.Attributes == nil || m.Attributes.Name != l.name {
			continue
		}
		if m.Flags&unix.IFF_LOOPBACK != 0 {
			return m.Index, true, nil
		}
		if !agentDummy(&m) {
			return 0, false, fmt.Errorf("%w: %s (the agent routes through a loopback, or a dummy interface with alias %q)", ErrNotOurs, l.name, LinkAlias)
		}
		return m.Index, false, nil
	}
	return 0, false, nil
}

// agentDummy reports whether a link is a dummy marked as an agent's.
func agentDummy(m *rtnetlink.LinkMessage) bool {
	return m.Attributes != nil && m.Attributes.Info != nil && m.Attributes.Info.Kind == "dummy" &&
		m.Attributes.Alias != nil && *m.Attributes.Alias == LinkAlias
}

// ensure finds the interface or creates it (a dummy, marked and brought up; a loopback is
// used as it is). It reports whether it created it.
func (l *link) ensure() (bool, error) {
	idx, loopback, err := l.find()
	if err != nil {
		return false, err
	}
	if loopback {
		l.index = idx
		return false, nil
	}
	created := false
	if idx == 0 {
		if err := l.c.Link.New(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC,
			Attributes: &rtnetlink.LinkAttributes{Name: l.name, Info: &rtnetlink.LinkInfo{Kind: "dummy"}}}); err != nil {
			return false, fmt.Errorf("dataplane: create dummy interface %s: %w", l.name, err)
		}
		created = true
		if idx, err = l.index0(); err != nil {
			return created, err
		}
		// The alias cannot be given at creation (the kernel applies it in a change only).
		alias := LinkAlias
		if err := l.c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: idx,
			Attributes: &rtnetlink.LinkAttributes{Alias: &alias}}); err != nil {
			return created, fmt.Errorf("dataplane: mark interface %s: %w", l.name, err)
		}
	}
	l.index = idx
	// Up, so that the routes through it are live.
	if err := l.c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: idx, Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		return created, fmt.Errorf("dataplane: set %s up: %w", l.name, err)
	}
	return created, nil
}

// index0 finds the index of the interface just created (it is ours by name and kind; the
// alias is not on yet).
func (l *link) index0() (uint32, error) {
	links, err := l.c.Link.List()
	if err != nil {
		return 0, fmt.Errorf("dataplane: list links: %w", err)
	}
	for _, m := range links {
		if m.Attributes != nil && m.Attributes.Name == l.name {
			return m.Index, nil
		}
	}
	return 0, fmt.Errorf("dataplane: the interface %s just created is not listed", l.name)
}

// isVIPRoute reports whether a route message is a VIP route of an agent, through any
// interface.
func isVIPRoute(m *rtnetlink.RouteMessage) bool {
	table := uint32(m.Table)
	if m.Attributes.Table != 0 {
		table = m.Attributes.Table
	}
	return table == unix.RT_TABLE_LOCAL && m.Type == unix.RTN_LOCAL && m.Protocol == RouteProtocol && m.Attributes.OutIface != 0 &&
		((m.Family == unix.AF_INET && m.DstLength == 32) || (m.Family == unix.AF_INET6 && m.DstLength == 128))
}

// vips returns the VIPs the agent routes through the interface, after deleting the agent's
// VIP routes through any other interface (left by an agent that ran with another
// --vip-interface: they would make the routes through this one EEXIST, as someone else's).
// It reports how many it deleted.
func (l *link) vips() (map[netip.Addr]struct{}, int, error) {
	msgs, err := l.listVIPRoutes()
	if err != nil {
		return nil, 0, fmt.Errorf("dataplane: list routes: %w", err)
	}
	out := map[netip.Addr]struct{}{}
	deleted := 0
	for i := range msgs {
		a, ok := netip.AddrFromSlice(msgs[i].Attributes.Dst)
		switch {
		case !ok || !isVIPRoute(&msgs[i]):
		case msgs[i].Attributes.OutIface == l.index:
			out[a.Unmap()] = struct{}{}
		default:
			if err := l.delRoute(a.Unmap(), msgs[i].Attributes.OutIface); err != nil {
				return nil, deleted, err
			}
			deleted++
		}
	}
	return out, deleted, nil
}

// listVIPRoutes dumps the local routes of the table local of the agent's protocol, of both
// families. The connection is strict (NETLINK_GET_STRICT_CHK), so the kernel filters the
// dump by table, protocol and type itself: a node's other routes (a full BGP table) are not
// sent at every audit. The caller still checks each route (isVIPRoute).
func (l *link) listVIPRoutes() ([]rtnetlink.RouteMessage, error) {
	return l.c.Route.ListMatch(&rtnetlink.RouteMessage{Family: unix.AF_UNSPEC, Table: unix.RT_TABLE_LOCAL,
		Protocol: RouteProtocol, Type: unix.RTN_LOCAL})
}

// route is the local route of a VIP through the interface.
func (l *link) route(a netip.Addr) *rtnetlink.RouteMessage { return vipRoute(a, l.index) }

// vipRoute is the local route of a VIP through interface index.
func vipRoute(a netip.Addr, index uint32) *rtnetlink.RouteMessage {
	m := &rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL, Protocol: RouteProtocol,
		Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
		Attributes: rtnetlink.RouteAttributes{Dst: net.IP(a.AsSlice()), OutIface: index}}
	if a.Is6() {
		m.Family, m.DstLength = unix.AF_INET6, 128
	}
	return m
}

// del removes the route of a through the interface.
func (l *link) del(a netip.Addr) error { return l.delRoute(a, l.index) }

// delRoute removes the VIP route of a through interface index; a route already gone is not
// an error.
func (l *link) delRoute(a netip.Addr, index uint32) error {
	if err := l.c.Route.Delete(vipRoute(a, index)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("dataplane: delete VIP route %s through interface %d: %w", a, index, err)
	}
	return nil
}

// legacyAddr is a VIP address an earlier agent bound to its interface.
type legacyAddr struct {
	addr  netip.Addr
	index uint32
}

// legacyAddresses returns the VIP addresses earlier agents bound (marked with AddrMarker and
// IFA_F_NOPREFIXROUTE, on whatever interface: their --vip-interface may not be this one's).
func (l *link) legacyAddresses() ([]legacyAddr, error) {
	msgs, err := l.c.Address.List()
	if err != nil {
		return nil, fmt.Errorf("dataplane: list addresses: %w", err)
	}
	var out []legacyAddr
	for _, m := range msgs {
		if m.Attributes == nil || m.Attributes.Priority != AddrMarker ||
			m.Attributes.Flags&unix.IFA_F_NOPREFIXROUTE == 0 || (m.PrefixLength != 32 && m.PrefixLength != 128) {
			continue
		}
		if a, ok := netip.AddrFromSlice(m.Attributes.Address); ok {
			out = append(out, legacyAddr{a.Unmap(), m.Index})
		}
	}
	return out, nil
}

// delLegacy removes legacy VIP addresses, then each agent's dummy interface they were on
// that is not this agent's interface and has no address left but IPv6 link-local ones.
func (l *link) delLegacy(legacy []legacyAddr) error {
	var errs []error
	others := map[uint32]struct{}{} // the interfaces they were on, other than this agent's
	for _, la := range legacy {
		a := la.addr
		m := &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 32, Index: la.index,
			Attributes: &rtnetlink.AddressAttributes{Address: net.IP(a.AsSlice()), Local: net.IP(a.AsSlice())}}
		if a.Is6() {
			m.Family, m.PrefixLength, m.Attributes.Local = unix.AF_INET6, 128, nil
		}
		if err := l.c.Address.Delete(m); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("dataplane: delete legacy VIP address %s: %w", a, err))
		}
		if la.index != l.index {
			others[la.index] = struct{}{}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for idx := range others {
		errs = append(errs, l.delLegacyLink(idx))
	}
	return errors.Join(errs...)
}

func (l *link) delLegacyLink(idx uint32) error {
	m, err := l.c.Link.Get(idx)
	if err != nil || !agentDummy(&m) {
		return nil // gone, or not an agent's
	}
	addrs, err := l.c.Address.List()
	if err != nil {
		return fmt.Errorf("dataplane: list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.Index == idx && a.Attributes != nil && !a.Attributes.Address.IsLinkLocalUnicast() {
			return nil // someone else's address is on it
		}
	}
	if err := l.c.Link.Delete(idx); err != nil {
		return fmt.Errorf("dataplane: delete the earlier agent's interface %s: %w", m.Attributes.Name, err)
	}
	return nil
}

// remove deletes every agent VIP route (whatever interface an agent routed through: they are
// the agent's by protocol) and every dummy interface marked as an agent's (with any legacy
// VIP addresses on it). It reports what it removed.
func (l *link) remove() ([]string, error) {
	msgs, err := l.listVIPRoutes()
	if err != nil {
		return nil, fmt.Errorf("dataplane: list routes: %w", err)
	}
	var removed []string
	var errs []error
	n := 0
	for i := range msgs {
		if !isVIPRoute(&msgs[i]) {
			continue
		}
		a, _ := netip.AddrFromSlice(msgs[i].Attributes.Dst)
		if err := l.delRoute(a.Unmap(), msgs[i].Attributes.OutIface); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		removed = append(removed, fmt.Sprintf("%d VIP routes", n))
	}
	links, err := l.c.Link.List()
	if err != nil {
		return removed, errors.Join(append(errs, fmt.Errorf("dataplane: list links: %w", err))...)
	}
	for _, m := range links {
		if !agentDummy(&m) {
			continue
		}
		if err := l.c.Link.Delete(m.Index); err != nil {
			errs = append(errs, fmt.Errorf("dataplane: delete interface %s: %w", m.Attributes.Name, err))
			continue
		}
		removed = append(removed, "interface "+m.Attributes.Name)
	}
	return removed, errors.Join(errs...)
}
