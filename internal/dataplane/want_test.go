package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

var (
	vip1  = netip.MustParseAddr("192.0.2.1")
	vip2  = netip.MustParseAddr("192.0.2.2")
	vip6  = netip.MustParseAddr("2001:db8::1")
	pod   = netip.MustParseAddr("10.244.1.5") // in the node's pod CIDR
	far   = netip.MustParseAddr("10.244.2.7") // another node's pod
	far6  = netip.MustParseAddr("2001:db8:2::7")
	local = PrefixesContain([]netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")})
)

func key(a netip.Addr, proto lvs.Protocol, port uint16) lvs.ServiceKey {
	return lvs.ServiceKey{Family: lvs.FamilyOf(a), Protocol: proto, Address: a, Port: port}
}

func dest(a netip.Addr, f lvs.Forwarding) lvs.Destination {
	return lvs.Destination{Family: lvs.FamilyOf(a), Address: a, Port: 8080, Forwarding: f, Weight: 1}
}

func TestServiceOf(t *testing.T) {
	p80 := Port{VIP: vip1, Protocol: lvs.TCP, Port: 80}
	for _, tt := range []struct {
		name  string
		k     lvs.ServiceKey
		dests []lvs.Destination
		mode  Masquerade
		want  Service
		ok    bool
	}{
		{"remote: both may be (the index leaves the local one out)", key(vip1, lvs.TCP, 80),
			[]lvs.Destination{dest(far, lvs.Masquerade), dest(pod, lvs.Masquerade)}, MasqueradeRemote,
			Service{Port: p80, Masq: []Masq{{Backend: pod}, {Backend: far}}}, true},
		{"all: both", key(vip1, lvs.TCP, 80), []lvs.Destination{dest(far, lvs.Masquerade), dest(pod, lvs.Masquerade)}, MasqueradeAll,
			Service{Port: p80, Masq: []Masq{{Backend: pod}, {Backend: far}}}, true},
		{"none: neither", key(vip1, lvs.TCP, 80), []lvs.Destination{dest(far, lvs.Masquerade)}, MasqueradeNone, Service{Port: p80}, true},
		{"DR and tunnels never", key(vip1, lvs.TCP, 80), []lvs.Destination{dest(far, lvs.DirectRouting), dest(far6, lvs.Tunnel)}, MasqueradeAll,
			Service{Port: p80}, true},
		{"one backend on two ports is one element", key(vip1, lvs.TCP, 80),
			[]lvs.Destination{dest(far, lvs.Masquerade), {Address: far, Port: 9090, Forwarding: lvs.Masquerade}}, MasqueradeAll,
			Service{Port: p80, Masq: []Masq{{Backend: far}}}, true},
		{"IPv6 UDP", key(vip6, lvs.UDP, 53), []lvs.Destination{dest(far6, lvs.Masquerade)}, MasqueradeRemote,
			Service{Port: Port{VIP: vip6, Protocol: lvs.UDP, Port: 53}, Masq: []Masq{{Backend: far6}}}, true},
		{"firewall mark: nothing", lvs.ServiceKey{Family: lvs.FamilyOf(vip1), FirewallMark: 7}, []lvs.Destination{dest(far, lvs.Masquerade)}, MasqueradeAll,
			Service{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ServiceOf(tt.k, tt.dests, tt.mode)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if d := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
				t.Errorf("ServiceOf (-want +got):\n%s", d)
			}
		})
	}
}

func elements(vips []netip.Addr, ports []Port, masq []Masq) Elements {
	e := NewElements()
	for _, v := range vips {
		e.VIPs[v] = struct{}{}
	}
	for _, p := range ports {
		e.Ports[p] = struct{}{}
	}
	for _, m := range masq {
		e.Masq[m] = struct{}{}
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
	for m := range w.Masq {
		e.Masq[m] = struct{}{}
	}
	return e
}

// wanted is e's elements, each needed by one service.
func wanted(e Elements) Wanted {
	w := Wanted{VIPs: map[netip.Addr]int32{}, Ports: e.Ports, Masq: map[Masq]int32{}}
	for v := range e.VIPs {
		w.VIPs[v] = 1
	}
	for m := range e.Masq {
		w.Masq[m] = 1
	}
	return w
}

// The index counts VIPs shared by services, and a change touches only what it changes.
func TestIndexDiff(t *testing.T) {
	p80, p443, p53 := Port{vip1, lvs.TCP, 80}, Port{vip1, lvs.TCP, 443}, Port{vip2, lvs.UDP, 53}
	m80, mPod := Masq{Backend: far}, Masq{Backend: pod}
	type step struct {
		name   string
		change func(x *Index)
		want   Delta // from the installed state of the previous step, over the touched elements
	}
	steps := []step{
		{"two services on one VIP, one on another", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), Service{Port: p80, Masq: []Masq{m80}})
			x.Set(key(vip1, lvs.TCP, 443), Service{Port: p443, Masq: []Masq{m80}})
			x.Set(key(vip2, lvs.UDP, 53), Service{Port: p53})
		}, Delta{AddVIPs: []netip.Addr{vip1, vip2}, AddPorts: []Port{p80, p443, p53}, AddMasq: []Masq{m80}}},
		{"the same again: nothing", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), Service{Port: p80, Masq: []Masq{m80}})
		}, Delta{}},
		{"one of the two on vip1 goes: the VIP and the shared masqueraded backend stay", func(x *Index) {
			x.Remove(key(vip1, lvs.TCP, 443))
		}, Delta{DelPorts: []Port{p443}}},
		{"the backend stops being masqueraded", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), Service{Port: p80})
		}, Delta{DelMasq: []Masq{m80}}},
		{"a pod of the node and a far one", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), Service{Port: p80, Masq: []Masq{mPod, m80}})
		}, Delta{AddMasq: []Masq{mPod, m80}}},
		{"the node's pod CIDR becomes local: its pod is not masqueraded", func(x *Index) { x.SetLocal(local) },
			Delta{DelMasq: []Masq{mPod}}},
		{"a local destination added while local: nothing to masquerade", func(x *Index) {
			x.Set(key(vip2, lvs.UDP, 53), Service{Port: p53, Masq: []Masq{mPod}})
		}, Delta{}},
		{"no local prefixes: the pod is masqueraded again", func(x *Index) { x.SetLocal(nil) },
			Delta{AddMasq: []Masq{mPod}}},
		{"the backends go again", func(x *Index) {
			x.Set(key(vip1, lvs.TCP, 80), Service{Port: p80})
			x.Set(key(vip2, lvs.UDP, 53), Service{Port: p53})
		}, Delta{DelMasq: []Masq{mPod, m80}}},
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
	want := wanted(elements([]netip.Addr{vip1}, []Port{p80}, nil))
	kernel := elements([]netip.Addr{vip1, vip2}, []Port{p81}, []Masq{{Backend: far}})
	got := Diff(kernel, want, nil)
	exp := Delta{DelVIPs: []netip.Addr{vip2}, AddPorts: []Port{p80}, DelPorts: []Port{p81}, DelMasq: []Masq{{Backend: far}}}
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
	for _, m := range []Masq{{Backend: far}, {Backend: far6}} {
		got, err := parseMasqKey(masqKey(m))
		if err != nil || got != m {
			t.Errorf("masq key of %v parses as %v, %v", m, got, err)
		}
	}
	if _, err := parsePortKey([]byte{1, 2, 3}); err == nil {
		t.Error("a 3-byte port key parsed")
	}
}
