package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

var (
	vip1 = netip.MustParseAddr("192.0.2.1")
	vip2 = netip.MustParseAddr("192.0.2.2")
	vip6 = netip.MustParseAddr("2001:db8::1")
)

// pfx parses prefixes.
func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func key(a netip.Addr, proto lvs.Protocol, port uint16) lvs.ServiceKey {
	return lvs.ServiceKey{Family: lvs.FamilyOf(a), Protocol: proto, Address: a, Port: port}
}

func TestPortOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		k    lvs.ServiceKey
		want Port
		ok   bool
	}{
		{"IPv4 TCP", key(vip1, lvs.TCP, 80), Port{VIP: vip1, Protocol: lvs.TCP, Port: 80}, true},
		{"IPv6 UDP", key(vip6, lvs.UDP, 53), Port{VIP: vip6, Protocol: lvs.UDP, Port: 53}, true},
		{"IPv4-mapped is IPv4", key(netip.AddrFrom16(vip1.As16()), lvs.SCTP, 9), Port{VIP: vip1, Protocol: lvs.SCTP, Port: 9}, true},
		{"firewall mark: nothing", lvs.ServiceKey{Family: lvs.IPv4, FirewallMark: 7}, Port{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := PortOf(tt.k)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if d := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
				t.Errorf("PortOf (-want +got):\n%s", d)
			}
		})
	}
}

// The bounds are written as nft writes an interval set (nft --debug=netlink add element:
// "element 00000000 : 1 [end] element 0001f40a : 0 [end] element 0002f40a : 1 [end]" for
// { 10.244.1.0/24 }, one start element for { 0.0.0.0/0 }, no end after 255.255.255.0/24).
func TestNoMasqBounds(t *testing.T) {
	a := netip.MustParseAddr
	start := func(s string) Bound { return Bound{Addr: a(s)} }
	end := func(s string) Bound { return Bound{Addr: a(s), End: true} }
	for _, tt := range []struct {
		name  string
		mode  Masquerade
		local []netip.Prefix
		want  []Bound
	}{
		{"all: nothing is spared", MasqueradeAll, pfx("10.244.1.0/24"), nil},
		{"none: every address of both families", MasqueradeNone, nil, []Bound{start("0.0.0.0"), start("::")}},
		{"remote without pod CIDRs: nothing", MasqueradeRemote, nil, nil},
		{"remote: the pod CIDR, after the end at 0.0.0.0", MasqueradeRemote, pfx("10.244.1.0/24"),
			[]Bound{end("0.0.0.0"), start("10.244.1.0"), end("10.244.2.0")}},
		{"dual stack", MasqueradeRemote, pfx("fd00:10:244:1::/64", "10.244.1.0/24"),
			[]Bound{end("0.0.0.0"), start("10.244.1.0"), end("10.244.2.0"), end("::"), start("fd00:10:244:1::"), end("fd00:10:244:2::")}},
		{"overlapping, adjacent and unmasked prefixes merge", MasqueradeRemote, pfx("10.244.1.7/24", "10.244.0.0/16", "10.245.0.0/16", "10.1.0.0/24"),
			[]Bound{end("0.0.0.0"), start("10.1.0.0"), end("10.1.1.0"), start("10.244.0.0"), end("10.246.0.0")}},
		{"a range at the family's end has no end; one at its start no end before it", MasqueradeRemote, pfx("255.255.255.0/24", "0.0.0.0/8"),
			[]Bound{start("0.0.0.0"), end("1.0.0.0"), start("255.255.255.0")}},
		{"a host prefix", MasqueradeRemote, pfx("10.244.1.5/32"), []Bound{end("0.0.0.0"), start("10.244.1.5"), end("10.244.1.6")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := NoMasqBounds(tt.mode, tt.local)
			if d := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("NoMasqBounds (-want +got):\n%s", d)
			}
		})
	}
}

func elements(vips []netip.Addr, ports []Port, noMasq []Bound) Elements {
	e := NewElements()
	for _, v := range vips {
		e.VIPs[v] = struct{}{}
	}
	for _, p := range ports {
		e.Ports[p] = struct{}{}
	}
	for _, b := range noMasq {
		e.NoMasq[b] = struct{}{}
	}
	return e
}

// installedOf is the elements installed to match w.
func installedOf(w Wanted) Elements {
	e := NewElements()
	for v := range w.VIPs {
		e.VIPs[v] = struct{}{}
	}
	for p := range w.Ports {
		e.Ports[p] = struct{}{}
	}
	for b := range w.NoMasq {
		e.NoMasq[b] = struct{}{}
	}
	return e
}

// wanted is e's elements, each needed by one service.
func wanted(e Elements) Wanted {
	w := Wanted{VIPs: map[netip.Addr]int32{}, Ports: e.Ports, NoMasq: e.NoMasq}
	for v := range e.VIPs {
		w.VIPs[v] = 1
	}
	return w
}

// The index counts VIPs shared by services, and a change touches only what it changes.
func TestIndexDiff(t *testing.T) {
	p80, p443, p53 := Port{vip1, lvs.TCP, 80}, Port{vip1, lvs.TCP, 443}, Port{vip2, lvs.UDP, 53}
	pod := []Bound{{Addr: netip.MustParseAddr("0.0.0.0"), End: true}, {Addr: netip.MustParseAddr("10.244.1.0")},
		{Addr: netip.MustParseAddr("10.244.2.0"), End: true}}
	wider := []Bound{pod[0], pod[1], {Addr: netip.MustParseAddr("10.245.0.0"), End: true}}
	type step struct {
		name   string
		change func(x *Index)
		want   Delta // from the installed state of the previous step, over the touched elements
	}
	steps := []step{
		{"two services on one VIP, one on another", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), p80)
			x.Set(key(vip1, lvs.TCP, 443), p443)
			x.Set(key(vip2, lvs.UDP, 53), p53)
		}, Delta{AddVIPs: []netip.Addr{vip1, vip2}, AddPorts: []Port{p80, p443, p53}}},
		{"the same again: nothing", func(x *Index) { x.Set(key(vip1, lvs.TCP, 80), p80) }, Delta{}},
		{"one of the two on vip1 goes: the VIP stays", func(x *Index) {
			x.Remove(key(vip1, lvs.TCP, 443))
		}, Delta{DelPorts: []Port{p443}}},
		{"the node's pod CIDR", func(x *Index) { x.SetNoMasq(pod) }, Delta{AddNoMasq: pod}},
		{"the same again: nothing", func(x *Index) { x.SetNoMasq(slices.Clone(pod)) }, Delta{}},
		{"a wider pod CIDR: one end for another", func(x *Index) { x.SetNoMasq(wider) },
			Delta{AddNoMasq: wider[2:], DelNoMasq: pod[2:]}},
		{"no pod CIDR", func(x *Index) { x.SetNoMasq(nil) }, Delta{DelNoMasq: wider}},
		{"the last service of vip1 goes: the VIP goes", func(x *Index) {
			x.Remove(key(vip1, lvs.TCP, 80))
		}, Delta{DelVIPs: []netip.Addr{vip1}, DelPorts: []Port{p80}}},
		{"removing an unknown service: nothing", func(x *Index) { x.Remove(key(vip6, lvs.TCP, 1)) }, Delta{}},
	}
	x := NewIndex()
	installed := NewElements()
	for _, s := range steps {
		s.change(x)
		touched := x.Touched()
		got := Diff(installed, x.Want(), &touched)
		if d := cmp.Diff(s.want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("%s: delta (-want +got):\n%s", s.name, d)
		}
		// A full diff finds the same.
		full := Diff(installed, x.Want(), nil)
		if d := cmp.Diff(s.want, full, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("%s: full delta (-want +got):\n%s", s.name, d)
		}
		installed.Apply(&got)
		if d := cmp.Diff(installedOf(x.Want()), installed, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("%s: installed after the delta (-want +got):\n%s", s.name, d)
		}
	}
	if want := elements([]netip.Addr{vip2}, []Port{p53}, nil); !cmp.Equal(want, installed, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()) {
		t.Errorf("end state %v, want %v", installed, want)
	}
}

// A full diff repairs drift: elements the kernel lost come back, strays go.
func TestDiffRepairsDrift(t *testing.T) {
	p80, p81 := Port{vip1, lvs.TCP, 80}, Port{vip1, lvs.TCP, 81}
	start, stray := Bound{Addr: netip.MustParseAddr("10.244.1.0")}, Bound{Addr: netip.MustParseAddr("10.9.0.0"), End: true}
	want := wanted(elements([]netip.Addr{vip1}, []Port{p80}, []Bound{start}))
	kernel := elements([]netip.Addr{vip1, vip2}, []Port{p81}, []Bound{stray})
	got := Diff(kernel, want, nil)
	exp := Delta{DelVIPs: []netip.Addr{vip2}, AddPorts: []Port{p80}, DelPorts: []Port{p81}, AddNoMasq: []Bound{start}, DelNoMasq: []Bound{stray}}
	if d := cmp.Diff(exp, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("delta (-want +got):\n%s", d)
	}
}

func TestParseMasquerade(t *testing.T) {
	for _, s := range []string{"all", "remote", "none"} {
		if m, err := ParseMasquerade(s); err != nil || string(m) != s {
			t.Errorf("ParseMasquerade(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMasquerade("local"); err == nil {
		t.Error("ParseMasquerade(local) accepted")
	}
}

// Keys of set elements round-trip (the parse side reads what the kernel lists).
func TestElementKeys(t *testing.T) {
	p := Port{VIP: vip1, Protocol: lvs.TCP, Port: 8443}
	if got := portKey(p); !cmp.Equal(got, []byte{192, 0, 2, 1, 6, 0, 0, 0, 0x20, 0xfb, 0, 0}) {
		t.Errorf("portKey = %v", got)
	}
	for _, a := range []netip.Addr{vip1, vip6} {
		got, err := parseAddrKey(addrKey(a))
		if err != nil || got != a {
			t.Errorf("the key of %v parses as %v, %v", a, got, err)
		}
	}
	if _, err := parsePortKey([]byte{1, 2, 3}); err == nil {
		t.Error("a 3-byte port key parsed")
	}
}
