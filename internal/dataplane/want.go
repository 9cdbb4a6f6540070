package dataplane

import (
	"cmp"
	"fmt"
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

// PortOf returns the port of the IPVS service k: what the dataplane needs of a service (its
// VIP routed, the port let in). Firewall-mark services have no address: ok is false.
// Masquerading depends on the destination's address only, not on the service (see Bound).
func PortOf(k lvs.ServiceKey) (p Port, ok bool) {
	if k.FirewallMark != 0 || !k.Address.IsValid() {
		return Port{}, false
	}
	return Port{VIP: k.Address.Unmap(), Protocol: k.Protocol, Port: k.Port}, true
}

// Bound is one element of the interval sets of destinations that are not masqueraded
// (nomasq4 and nomasq6): the first address of a range, or (End) the first address after
// one. The sets hold ranges of the node's prefixes, not destinations: a change of
// destinations costs no element, and 100,000 masqueraded backends no 100,000 elements.
type Bound struct {
	Addr netip.Addr
	End  bool
}

// NoMasqBounds returns the elements of the sets of destinations mode does not masquerade,
// given the node's local prefixes (its pod CIDRs): none for MasqueradeAll, every address for
// MasqueradeNone, the local prefixes for MasqueradeRemote. Overlapping and adjacent prefixes
// are merged (the kernel refuses overlapping intervals). As nft writes an interval set, a
// family's first range that does not start at its first address is preceded by an end at
// that address, and a range that ends at the last address has no end.
func NoMasqBounds(mode Masquerade, local []netip.Prefix) []Bound {
	var prefixes []netip.Prefix
	switch mode {
	case MasqueradeNone:
		prefixes = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
	case MasqueradeRemote:
		prefixes = local
	}
	var bounds []Bound
	for _, zero := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		rs := mergeRanges(prefixes, zero.Is4())
		if len(rs) > 0 && rs[0].first != zero {
			bounds = append(bounds, Bound{Addr: zero, End: true})
		}
		for _, r := range rs {
			bounds = append(bounds, Bound{Addr: r.first})
			if next := r.last.Next(); next.IsValid() {
				bounds = append(bounds, Bound{Addr: next, End: true})
			}
		}
	}
	return bounds
}

type addrRange struct{ first, last netip.Addr }

// mergeRanges returns the prefixes of one family as sorted ranges, overlapping and adjacent
// ones merged. IPv4-mapped IPv6 prefixes are IPv6 (the kernel sees them so).
func mergeRanges(prefixes []netip.Prefix, v4 bool) []addrRange {
	var rs []addrRange
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Is4() != v4 {
			continue
		}
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			if next := cur.last.Next(); !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// lastAddr returns the last address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Elements are the set elements of the dataplane: VIPs (the addresses routed and the
// nftables VIP sets), ports, and the bounds of the destinations not masqueraded.
type Elements struct {
	VIPs   map[netip.Addr]struct{}
	Ports  map[Port]struct{}
	NoMasq map[Bound]struct{}
}

// NewElements returns empty elements.
func NewElements() Elements {
	return Elements{VIPs: map[netip.Addr]struct{}{}, Ports: map[Port]struct{}{}, NoMasq: map[Bound]struct{}{}}
}

// Wanted are the elements the node needs: VIPs with the number of services that need each
// (several share them), ports, and the bounds of the destinations not masqueraded.
type Wanted struct {
	VIPs   map[netip.Addr]int32
	Ports  map[Port]struct{}
	NoMasq map[Bound]struct{}
}

// Index is the node's wanted elements, kept incrementally as services change. It records
// which elements each change touched, so that a change costs what it touches and not the size
// of the node.
type Index struct {
	services map[lvs.ServiceKey]Port
	want     Wanted
	touched  Elements
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{services: map[lvs.ServiceKey]Port{},
		want:    Wanted{VIPs: map[netip.Addr]int32{}, Ports: map[Port]struct{}{}, NoMasq: map[Bound]struct{}{}},
		touched: NewElements()}
}

// Set records p as the port of service k (replacing what it had before).
func (x *Index) Set(k lvs.ServiceKey, p Port) {
	if old, ok := x.services[k]; ok {
		if old == p {
			return
		}
		x.drop(old)
	}
	x.services[k] = p
	x.want.VIPs[p.VIP]++
	x.want.Ports[p] = struct{}{}
	x.touched.VIPs[p.VIP] = struct{}{}
	x.touched.Ports[p] = struct{}{}
}

// Remove forgets service k.
func (x *Index) Remove(k lvs.ServiceKey) {
	if old, ok := x.services[k]; ok {
		x.drop(old)
		delete(x.services, k)
	}
}

func (x *Index) drop(p Port) {
	x.touched.VIPs[p.VIP] = struct{}{}
	x.touched.Ports[p] = struct{}{}
	if x.want.VIPs[p.VIP]--; x.want.VIPs[p.VIP] <= 0 {
		delete(x.want.VIPs, p.VIP)
	}
	delete(x.want.Ports, p)
}

// SetNoMasq sets the bounds of the destinations not masqueraded (NoMasqBounds).
func (x *Index) SetNoMasq(bounds []Bound) {
	want := make(map[Bound]struct{}, len(bounds))
	for _, b := range bounds {
		want[b] = struct{}{}
	}
	for b := range x.want.NoMasq {
		if _, ok := want[b]; !ok {
			x.touched.NoMasq[b] = struct{}{}
		}
	}
	for b := range want {
		if _, ok := x.want.NoMasq[b]; !ok {
			x.touched.NoMasq[b] = struct{}{}
		}
	}
	x.want.NoMasq = want
}

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
	AddVIPs, DelVIPs     []netip.Addr
	AddPorts, DelPorts   []Port
	AddNoMasq, DelNoMasq []Bound
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return len(d.AddVIPs)+len(d.DelVIPs)+len(d.AddPorts)+len(d.DelPorts)+len(d.AddNoMasq)+len(d.DelNoMasq) == 0
}

// Diff returns what to change among the candidates so that installed holds what want holds
// (candidates nil: every element of either). It changes nothing.
func Diff(installed Elements, want Wanted, candidates *Elements) Delta {
	var d Delta
	var cv map[netip.Addr]struct{}
	var cp map[Port]struct{}
	var cn map[Bound]struct{}
	if candidates != nil {
		cv, cp, cn = candidates.VIPs, candidates.Ports, candidates.NoMasq
	}
	d.AddVIPs, d.DelVIPs = diffSet(installed.VIPs, want.VIPs, cv, netip.Addr.Compare)
	d.AddPorts, d.DelPorts = diffSet(installed.Ports, want.Ports, cp, comparePort)
	d.AddNoMasq, d.DelNoMasq = diffSet(installed.NoMasq, want.NoMasq, cn, compareBound)
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
	for _, b := range d.AddNoMasq {
		e.NoMasq[b] = struct{}{}
	}
	for _, b := range d.DelNoMasq {
		delete(e.NoMasq, b)
	}
}

func comparePort(a, b Port) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

func compareBound(a, b Bound) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmpBool(a.End, b.End))
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
