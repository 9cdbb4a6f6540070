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

// AddrMarker is the route priority (IFA_RT_PRIORITY, "metric" in "ip addr") of the agent's
// addresses; with IFA_F_NOPREFIXROUTE it marks them as the agent's (the addresses add no
// prefix route, so the priority routes nothing). Its bytes spell "klvs".
const AddrMarker = 0x6b6c7673

// ErrNotOurs is matched by the error of an interface of the VIP interface's name that the
// agent did not create.
var ErrNotOurs = errors.New("dataplane: the interface exists and is not the agent's")

// link is the VIP interface through rtnetlink.
type link struct {
	c *rtnetlink.Conn
	// raw, when set, is a plain netlink socket of the same namespace for pipelined address
	// adds (the library sends one request and waits for its answer each time).
	raw   *netlink.Conn
	name  string
	index uint32
}

// addWindow is how many address adds go in one sendmsg before their ACKs are read.
const addWindow = 128

// addMany binds addrs, addWindow requests per sendmsg (each still answered on its own: the
// kernel handles them in order and ACKs each in order). It returns the addresses it bound;
// one already there is someone else's and not returned, as in add.
func (l *link) addMany(addrs []netip.Addr) ([]netip.Addr, []error) {
	if l.raw == nil {
		var added []netip.Addr
		var errs []error
		for _, a := range addrs {
			ok, err := l.add(a)
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				added = append(added, a)
			}
		}
		return added, errs
	}
	var added []netip.Addr
	var errs []error
	for chunk := range slices.Chunk(addrs, addWindow) {
		msgs := make([]netlink.Message, len(chunk))
		for i, a := range chunk {
			b, err := l.message(a).MarshalBinary()
			if err != nil {
				return added, append(errs, fmt.Errorf("dataplane: encode address %s: %w", a, err))
			}
			msgs[i] = netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWADDR,
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl}, Data: b}
		}
		if _, err := l.raw.SendMessages(msgs); err != nil {
			return added, append(errs, fmt.Errorf("dataplane: add %d addresses to %s: %w", len(chunk), l.name, err))
		}
		for _, a := range chunk {
			_, err := l.raw.Receive()
			switch {
			case err == nil:
				added = append(added, a)
			case errors.Is(err, unix.EEXIST):
			default:
				errs = append(errs, fmt.Errorf("dataplane: add address %s to %s: %w", a, l.name, err))
			}
		}
	}
	return added, errs
}

// find returns the index of the interface name, 0 when there is none; it fails with
// ErrNotOurs when the interface is not the agent's.
func (l *link) find() (uint32, error) {
	links, err := l.c.Link.List()
	if err != nil {
		return 0, fmt.Errorf("dataplane: list links: %w", err)
	}
	for _, m := range links {
		if m.Attributes == nil || m.Attributes.Name != l.name {
			continue
		}
		if m.Attributes.Info == nil || m.Attributes.Info.Kind != "dummy" || m.Attributes.Alias == nil || *m.Attributes.Alias != LinkAlias {
			return 0, fmt.Errorf("%w: %s (a dummy interface with alias %q is the agent's)", ErrNotOurs, l.name, LinkAlias)
		}
		return m.Index, nil
	}
	return 0, nil
}

// ensure finds or creates the interface, marks it and brings it up. It reports whether it
// created it.
func (l *link) ensure() (bool, error) {
	idx, err := l.find()
	if err != nil {
		return false, err
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
	// Up, so that its addresses' local routes are live.
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

// ours reports whether an address message is one of the agent's on the interface.
func (l *link) ours(m *rtnetlink.AddressMessage) bool {
	if m.Index != l.index || m.Attributes == nil {
		return false
	}
	return m.Attributes.Priority == AddrMarker && m.Attributes.Flags&unix.IFA_F_NOPREFIXROUTE != 0 &&
		(m.PrefixLength == 32 || m.PrefixLength == 128)
}

// addresses returns the agent's addresses on the interface.
func (l *link) addresses() (map[netip.Addr]struct{}, error) {
	msgs, err := l.c.Address.List()
	if err != nil {
		return nil, fmt.Errorf("dataplane: list addresses: %w", err)
	}
	out := map[netip.Addr]struct{}{}
	for i := range msgs {
		if !l.ours(&msgs[i]) {
			continue
		}
		if a, ok := netip.AddrFromSlice(msgs[i].Attributes.Address); ok {
			out[a.Unmap()] = struct{}{}
		}
	}
	return out, nil
}

func (l *link) message(a netip.Addr) *rtnetlink.AddressMessage {
	m := &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 32, Scope: unix.RT_SCOPE_UNIVERSE, Index: l.index,
		Attributes: &rtnetlink.AddressAttributes{Address: net.IP(a.AsSlice()), Priority: AddrMarker, Flags: unix.IFA_F_NOPREFIXROUTE}}
	if a.Is4() {
		m.Attributes.Local = m.Attributes.Address
	} else {
		// No duplicate address detection: the VIP is usable at once (and a VIP is on several
		// nodes by design).
		m.Family, m.PrefixLength = unix.AF_INET6, 128
		m.Attributes.Flags |= unix.IFA_F_NODAD
	}
	return m
}

// add binds a. An address that is already there is someone else's (the agent's own are
// known): it is not an error, and added is false so that it is never deleted.
func (l *link) add(a netip.Addr) (added bool, err error) {
	if err := l.c.Address.New(l.message(a)); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return false, nil
		}
		return false, fmt.Errorf("dataplane: add address %s to %s: %w", a, l.name, err)
	}
	return true, nil
}

// del unbinds a; an address already gone is not an error.
func (l *link) del(a netip.Addr) error {
	if err := l.c.Address.Delete(l.message(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("dataplane: delete address %s from %s: %w", a, l.name, err)
	}
	return nil
}

// remove deletes the interface when it is the agent's (its addresses go with it).
func (l *link) remove() (bool, error) {
	idx, err := l.find()
	if err != nil || idx == 0 {
		return false, err
	}
	if err := l.c.Link.Delete(idx); err != nil {
		return false, fmt.Errorf("dataplane: delete interface %s: %w", l.name, err)
	}
	return true, nil
}
