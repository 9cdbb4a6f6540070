// Package kubeproxy is the agent benchmark's kube-proxy-style contender: a full resync of the
// whole IPVS table with github.com/moby/ipvs, as kube-proxy's IPVS proxier does after any change
// (its latency for one EndpointSlice change is about the time of one full resync). Per service it
// makes the calls kube-proxy makes: a service get (then an add or update when it is missing or
// differs), a second service get and a destination dump, then the destination writes.
package kubeproxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
)

// Service is one wanted TCP IPv4 virtual service with its destinations (masquerade forwarding).
type Service struct {
	Addr      netip.Addr
	Port      uint16
	Scheduler string
	Dests     []Dest
}

// Dest is one wanted destination.
type Dest struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
}

// Counts are the netlink requests one resync made.
type Counts struct {
	Gets, Dumps, Writes int
}

// Diff returns the destinations of want that cur lacks (add), those of cur that want lacks
// (del), and those of want whose weight differs in cur (update), each in want's or cur's order.
func Diff(cur, want []Dest) (add, del, update []Dest) {
	have := make(map[netip.AddrPort]Dest, len(cur))
	for _, d := range cur {
		have[netip.AddrPortFrom(d.Addr, d.Port)] = d
	}
	wanted := make(map[netip.AddrPort]bool, len(want))
	for _, d := range want {
		k := netip.AddrPortFrom(d.Addr, d.Port)
		wanted[k] = true
		c, ok := have[k]
		switch {
		case !ok:
			add = append(add, d)
		case c.Weight != d.Weight:
			update = append(update, d)
		}
	}
	for _, d := range cur {
		if !wanted[netip.AddrPortFrom(d.Addr, d.Port)] {
			del = append(del, d)
		}
	}
	return add, del, update
}

func mobyService(s *Service) *mobyipvs.Service {
	return &mobyipvs.Service{
		Address: net.IP(s.Addr.AsSlice()), Protocol: syscall.IPPROTO_TCP, Port: s.Port,
		SchedName: s.Scheduler, Netmask: 0xffffffff, AddressFamily: syscall.AF_INET,
	}
}

func mobyDest(d Dest) *mobyipvs.Destination {
	return &mobyipvs.Destination{
		Address: net.IP(d.Addr.AsSlice()), Port: d.Port, Weight: d.Weight,
		ConnectionFlags: mobyipvs.ConnectionFlagMasq, AddressFamily: syscall.AF_INET,
	}
}

// Resync makes the kernel's table hold want (it does not delete services want lacks: the
// benchmark's changes never remove one).
func Resync(h *mobyipvs.Handle, want []Service) (Counts, error) {
	var n Counts
	for i := range want {
		s := &want[i]
		ms := mobyService(s)
		cur, err := h.GetService(ms)
		n.Gets++
		switch {
		case err != nil:
			if err := h.NewService(ms); err != nil {
				return n, fmt.Errorf("add service %v:%d: %w", s.Addr, s.Port, err)
			}
			n.Writes++
		case cur.SchedName != s.Scheduler:
			if err := h.UpdateService(ms); err != nil {
				return n, fmt.Errorf("update service %v:%d: %w", s.Addr, s.Port, err)
			}
			n.Writes++
		}
		applied, err := h.GetService(ms)
		n.Gets++
		if err != nil {
			return n, fmt.Errorf("get service %v:%d: %w", s.Addr, s.Port, err)
		}
		mds, err := h.GetDestinations(applied)
		n.Dumps++
		if err != nil {
			return n, fmt.Errorf("destinations of %v:%d: %w", s.Addr, s.Port, err)
		}
		cur2 := make([]Dest, 0, len(mds))
		for _, md := range mds {
			a, _ := netip.AddrFromSlice(md.Address)
			cur2 = append(cur2, Dest{Addr: a.Unmap(), Port: md.Port, Weight: md.Weight})
		}
		add, del, update := Diff(cur2, s.Dests)
		for _, d := range add {
			if err := h.NewDestination(applied, mobyDest(d)); err != nil {
				return n, fmt.Errorf("add dest %v of %v:%d: %w", d.Addr, s.Addr, s.Port, err)
			}
		}
		for _, d := range update {
			if err := h.UpdateDestination(applied, mobyDest(d)); err != nil {
				return n, fmt.Errorf("update dest %v of %v:%d: %w", d.Addr, s.Addr, s.Port, err)
			}
		}
		for _, d := range del {
			if err := h.DelDestination(applied, mobyDest(d)); err != nil {
				return n, fmt.Errorf("delete dest %v of %v:%d: %w", d.Addr, s.Addr, s.Port, err)
			}
		}
		n.Writes += len(add) + len(update) + len(del)
	}
	return n, nil
}

// Clone returns a deep copy of want (a resync round changes one service's destinations).
func Clone(want []Service) []Service {
	out := slices.Clone(want)
	for i := range out {
		out[i].Dests = slices.Clone(out[i].Dests)
	}
	return out
}
