package dataplane

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Masquerade is the source NAT mode of destinations IPVS forwards in Masquerade (NAT) mode.
type Masquerade string

// Masquerade modes.
const (
	// MasqueradeAll source-NATs every masqueraded connection: replies always come back, the
	// real servers never see client addresses.
	MasqueradeAll Masquerade = "all"
	// MasqueradeRemote source-NATs connections to destinations outside the node's local
	// prefixes (its pod CIDRs): local pods route their replies through the node anyway and
	// keep seeing client addresses; other destinations (pods of other nodes, servers
	// elsewhere) would answer the client directly, past the director, and the reply would
	// be dropped. The default.
	MasqueradeRemote Masquerade = "remote"
	// MasqueradeNone never source-NATs: every real server must route replies through the
	// node.
	MasqueradeNone Masquerade = "none"
)

// ParseMasquerade parses --masquerade.
func ParseMasquerade(s string) (Masquerade, error) {
	switch m := Masquerade(s); m {
	case MasqueradeAll, MasqueradeRemote, MasqueradeNone:
		return m, nil
	}
	return "", fmt.Errorf("dataplane: masquerade mode %q: want all, remote or none", s)
}

// Port is one VIP, protocol and port an IPVS service serves.
type Port struct {
	VIP      netip.Addr
	Protocol lvs.Protocol
	Port     uint16
}

func (p Port) String() string {
	return p.Protocol.String() + "/" + netip.AddrPortFrom(p.VIP, p.Port).String()
}

// Masq is one masqueraded destination: connections to a VIP that IPVS forwards to Backend
// are source-NATed to the node's address. The choice depends on the destination only (the
// mode is the node's, and whether a destination is local is a property of its address), so
// one element serves every service that has the destination.
type Masq struct {
	Backend netip.Addr
}

func (m Masq) String() string { return m.Backend.String() }

// Service is what one IPVS service needs of the dataplane.
type Service struct {
	Port Port
	Masq []Masq
}

// ServiceOf returns what the service k with destinations dests needs: its port, and the
// destinations mode may masquerade (MasqueradeRemote leaves the node's local ones out in the
// Index, which knows the local prefixes). Firewall-mark services have no address: ok is false.
func ServiceOf(k lvs.ServiceKey, dests []lvs.Destination, mode Masquerade) (s Service, ok bool) {
	if k.FirewallMark != 0 || !k.Address.IsValid() {
		return Service{}, false
	}
	s.Port = Port{VIP: k.Address.Unmap(), Protocol: k.Protocol, Port: k.Port}
	if mode == MasqueradeNone {
		return s, true
	}
	for i := range dests {
		d := &dests[i]
		a := d.Address.Unmap()
		// DR and tunnels are never masqueraded: their replies go straight to the client by
		// design. Neither are destinations of the other family (only tunnels have them).
		if d.Forwarding != lvs.Masquerade || a.Is4() != s.Port.VIP.Is4() {
			continue
		}
		s.Masq = append(s.Masq, Masq{Backend: a})
	}
	slices.SortFunc(s.Masq, compareMasq)
	s.Masq = slices.Clip(slices.Compact(s.Masq))
	return s, true
}

// Elements are the set elements of the dataplane: VIPs (the addresses bound and the nftables
// VIP sets), ports and masqueraded destinations.
type Elements struct {
	VIPs  map[netip.Addr]struct{}
	Ports map[Port]struct{}
	Masq  map[Masq]struct{}
}

// NewElements returns empty elements.
func NewElements() Elements {
	return Elements{VIPs: map[netip.Addr]struct{}{}, Ports: map[Port]struct{}{}, Masq: map[Masq]struct{}{}}
}

// Clone returns a copy of e.
func (e Elements) Clone() Elements {
	return Elements{VIPs: maps.Clone(e.VIPs), Ports: maps.Clone(e.Ports), Masq: maps.Clone(e.Masq)}
}

// Wanted are the elements the services need, VIPs and masqueraded destinations with the
// number of services that need each (several share them).
type Wanted struct {
	VIPs  map[netip.Addr]int32
	Ports map[Port]struct{}
	Masq  map[Masq]int32
}

// Index is the node's wanted elements, kept incrementally as services change. It records
// which elements each change touched, so that a change costs what it touches and not the size
// of the node.
type Index struct {
	services map[lvs.ServiceKey]Service
	want     Wanted
	// local: destinations that are not masqueraded (MasqueradeRemote's); nil: none.
	local   func(netip.Addr) bool
	touched Elements
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{services: map[lvs.ServiceKey]Service{},
		want:    Wanted{VIPs: map[netip.Addr]int32{}, Ports: map[Port]struct{}{}, Masq: map[Masq]int32{}},
		touched: NewElements()}
}

// Set records s as what service k needs (replacing what it needed before).
func (x *Index) Set(k lvs.ServiceKey, s Service) {
	if old, ok := x.services[k]; ok {
		if old.Port == s.Port && slices.Equal(old.Masq, s.Masq) {
			return
		}
		x.drop(old)
	}
	x.services[k] = s
	x.add(s)
}

func (x *Index) add(s Service) {
	x.want.VIPs[s.Port.VIP]++
	x.want.Ports[s.Port] = struct{}{}
	x.touched.VIPs[s.Port.VIP] = struct{}{}
	x.touched.Ports[s.Port] = struct{}{}
	for _, m := range s.Masq {
		if x.local != nil && x.local(m.Backend) {
			continue
		}
		x.want.Masq[m]++
		x.touched.Masq[m] = struct{}{}
	}
}

// Remove forgets service k.
func (x *Index) Remove(k lvs.ServiceKey) {
	if old, ok := x.services[k]; ok {
		x.drop(old)
		delete(x.services, k)
	}
}

func (x *Index) drop(s Service) {
	x.touched.VIPs[s.Port.VIP] = struct{}{}
	x.touched.Ports[s.Port] = struct{}{}
	if x.want.VIPs[s.Port.VIP]--; x.want.VIPs[s.Port.VIP] <= 0 {
		delete(x.want.VIPs, s.Port.VIP)
	}
	delete(x.want.Ports, s.Port)
	for _, m := range s.Masq {
		if x.local != nil && x.local(m.Backend) {
			continue
		}
		if x.want.Masq[m]--; x.want.Masq[m] <= 0 {
			delete(x.want.Masq, m)
		}
		x.touched.Masq[m] = struct{}{}
	}
}

// SetLocal sets which destinations are local to the node (not masqueraded; nil: none), and
// counts every service's again.
func (x *Index) SetLocal(local func(netip.Addr) bool) {
	for _, s := range x.services {
		x.drop(s)
	}
	x.local = local
	for _, s := range x.services {
		x.add(s)
	}
}

// Keys returns the keys of the services in the index.
func (x *Index) Keys() []lvs.ServiceKey { return slices.Collect(maps.Keys(x.services)) }

// Want returns the wanted elements (not a copy: do not change them).
func (x *Index) Want() Wanted { return x.want }

// Touched returns the elements changes touched since the last call, and forgets them.
func (x *Index) Touched() Elements {
	t := x.touched
	x.touched = NewElements()
	return t
}

// Delta is what to add and remove to go from installed elements to wanted ones, sorted.
type Delta struct {
	AddVIPs, DelVIPs   []netip.Addr
	AddPorts, DelPorts []Port
	AddMasq, DelMasq   []Masq
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return len(d.AddVIPs)+len(d.DelVIPs)+len(d.AddPorts)+len(d.DelPorts)+len(d.AddMasq)+len(d.DelMasq) == 0
}

// Diff returns what to change among the candidates so that installed holds what want holds
// (candidates nil: every element of either). It changes nothing.
func Diff(installed Elements, want Wanted, candidates *Elements) Delta {
	var d Delta
	var cv map[netip.Addr]struct{}
	var cp map[Port]struct{}
	var cm map[Masq]struct{}
	if candidates != nil {
		cv, cp, cm = candidates.VIPs, candidates.Ports, candidates.Masq
	}
	d.AddVIPs, d.DelVIPs = diffSet(installed.VIPs, want.VIPs, cv, netip.Addr.Compare)
	d.AddPorts, d.DelPorts = diffSet(installed.Ports, want.Ports, cp, comparePort)
	d.AddMasq, d.DelMasq = diffSet(installed.Masq, want.Masq, cm, compareMasq)
	return d
}

func diffSet[T comparable, H, W any](have map[T]H, want map[T]W, candidates map[T]struct{}, compare func(a, b T) int) (add, del []T) {
	check := func(e T) {
		_, h := have[e]
		_, w := want[e]
		switch {
		case w && !h:
			add = append(add, e)
		case h && !w:
			del = append(del, e)
		}
	}
	if candidates != nil {
		for e := range candidates {
			check(e)
		}
	} else {
		for e := range want {
			check(e)
		}
		for e := range have {
			if _, ok := want[e]; !ok {
				check(e)
			}
		}
	}
	slices.SortFunc(add, compare)
	slices.SortFunc(del, compare)
	return add, del
}

// Apply records a delta that the kernel accepted in e.
func (e Elements) Apply(d *Delta) {
	for _, v := range d.AddVIPs {
		e.VIPs[v] = struct{}{}
	}
	for _, v := range d.DelVIPs {
		delete(e.VIPs, v)
	}
	for _, p := range d.AddPorts {
		e.Ports[p] = struct{}{}
	}
	for _, p := range d.DelPorts {
		delete(e.Ports, p)
	}
	for _, m := range d.AddMasq {
		e.Masq[m] = struct{}{}
	}
	for _, m := range d.DelMasq {
		delete(e.Masq, m)
	}
}

func comparePort(a, b Port) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

func compareMasq(a, b Masq) int { return a.Backend.Compare(b.Backend) }

// PrefixesContain returns the check "the address is in one of prefixes" (MasqueradeRemote's
// local destinations).
func PrefixesContain(prefixes []netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}
