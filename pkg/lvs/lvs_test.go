package lvs

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var addr = netip.MustParseAddr

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{IPv4.String(), "IPv4"},
		{IPv6.String(), "IPv6"},
		{Family(7).String(), "Family(7)"},
		{TCP.String(), "TCP"},
		{UDP.String(), "UDP"},
		{SCTP.String(), "SCTP"},
		{Protocol(0).String(), ""},
		{Protocol(1).String(), "Protocol(1)"},
		{Masquerade.String(), "Masquerade"},
		{Local.String(), "Local"},
		{Tunnel.String(), "Tunnel"},
		{DirectRouting.String(), "DirectRouting"},
		{Bypass.String(), "Bypass"},
		{Forwarding(9).String(), "Forwarding(9)"},
		{TunnelIPIP.String(), "IPIP"},
		{TunnelGUE.String(), "GUE"},
		{TunnelGRE.String(), "GRE"},
		{TunnelType(3).String(), "TunnelType(3)"},
		{TunnelFlags(0).String(), "nocsum"},
		{TunnelChecksum.String(), "csum"},
		{TunnelRemoteChecksum.String(), "remcsum"},
		{(TunnelChecksum | TunnelRemoteChecksum).String(), "csum,remcsum"},
		{TunnelFlags(4).String(), "0x4"},
		{ServiceFlags(0).String(), ""},
		{(FlagPersistent | FlagHashed | FlagOnePacket).String(), "persistent,hashed,ops"},
		{(FlagSched1 | FlagSched2 | FlagSched3 | 0x100).String(), "flag-1,flag-2,flag-3,0x100"},
		{UserFlags.String(), "persistent,ops,flag-1,flag-2,flag-3"},
		{ServiceKey{Protocol: TCP, Address: addr("10.0.0.1"), Port: 80}.String(), "TCP 10.0.0.1:80"},
		{ServiceKey{Protocol: UDP, Address: addr("2001:db8::1"), Port: 53}.String(), "UDP [2001:db8::1]:53"},
		{ServiceKey{Family: IPv6, FirewallMark: 3}.String(), "fwmark 3/IPv6"},
		{DestinationKey{Address: addr("10.1.0.1"), Port: 8080}.String(), "10.1.0.1:8080"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestFamilyOf(t *testing.T) {
	for _, tc := range []struct {
		a    netip.Addr
		want Family
		bits int
	}{
		{addr("10.0.0.1"), IPv4, 32},
		{addr("::ffff:10.0.0.1"), IPv4, 32}, // mapped: IPv4
		{addr("2001:db8::1"), IPv6, 128},
		{netip.Addr{}, 0, 0}, // invalid: no family, not IPv6
	} {
		if got := FamilyOf(tc.a); got != tc.want || got.Bits() != tc.bits {
			t.Errorf("FamilyOf(%v) = %v (%d bits), want %v (%d bits)", tc.a, got, got.Bits(), tc.want, tc.bits)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Protocol
		ok   bool
	}{
		{"TCP", TCP, true}, {"tcp", TCP, true}, {"Udp", UDP, true}, {"sctp", SCTP, true}, {"icmp", 0, false}, {"", 0, false},
	} {
		got, err := ParseProtocol(tc.in)
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUnknown)) {
			t.Errorf("ParseProtocol(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want Forwarding
		ok   bool
	}{
		{"Masquerade", Masquerade, true}, {"masq", Masquerade, true}, {"nat", Masquerade, true},
		{"local", Local, true}, {"Tunnel", Tunnel, true}, {"ipip", Tunnel, true},
		{"DirectRouting", DirectRouting, true}, {"route", DirectRouting, true}, {"dr", DirectRouting, true},
		{"gatewaying", DirectRouting, true}, {"direct", DirectRouting, true}, {"bypass", Bypass, true},
		{"fullnat", 0, false},
	} {
		got, err := ParseForwarding(tc.in)
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUnknown)) {
			t.Errorf("ParseForwarding(%q) = %v, %v", tc.in, got, err)
		}
	}
	// Every name String returns parses back.
	for m := Masquerade; m <= Bypass; m++ {
		if got, err := ParseForwarding(m.String()); got != m || err != nil {
			t.Errorf("ParseForwarding(%q) = %v, %v", m, got, err)
		}
	}
}

func TestKeys(t *testing.T) {
	opt := cmpopts.EquateComparable(netip.Addr{})
	for _, tc := range []struct {
		name string
		in   ServiceKey
		want ServiceKey
	}{
		{"family from the address", ServiceKey{Protocol: TCP, Address: addr("10.0.0.1"), Port: 80},
			ServiceKey{Family: IPv4, Protocol: TCP, Address: addr("10.0.0.1"), Port: 80}},
		{"mapped address unmapped", ServiceKey{Protocol: TCP, Address: addr("::ffff:10.0.0.1"), Port: 80},
			ServiceKey{Family: IPv4, Protocol: TCP, Address: addr("10.0.0.1"), Port: 80}},
		{"IPv6", ServiceKey{Protocol: UDP, Address: addr("2001:db8::1"), Port: 53},
			ServiceKey{Family: IPv6, Protocol: UDP, Address: addr("2001:db8::1"), Port: 53}},
		{"firewall mark defaults to IPv4 and drops the rest", ServiceKey{Protocol: TCP, Address: addr("10.0.0.1"), Port: 80, FirewallMark: 5},
			ServiceKey{Family: IPv4, FirewallMark: 5}},
		{"firewall mark keeps its family", ServiceKey{Family: IPv6, FirewallMark: 5}, ServiceKey{Family: IPv6, FirewallMark: 5}},
		{"explicit family kept", ServiceKey{Family: IPv6, Protocol: TCP, Address: addr("10.0.0.1")},
			ServiceKey{Family: IPv6, Protocol: TCP, Address: addr("10.0.0.1")}},
		{"invalid address: no family", ServiceKey{Protocol: TCP, Port: 1}, ServiceKey{Protocol: TCP, Port: 1}},
	} {
		if d := cmp.Diff(tc.want, tc.in.Canonical(), opt); d != "" {
			t.Errorf("%s: Canonical (-want +got):\n%s", tc.name, d)
		}
		s := Service{ServiceKey: tc.in, Scheduler: "rr"}
		if d := cmp.Diff(tc.want, s.Key(), opt); d != "" {
			t.Errorf("%s: Service.Key (-want +got):\n%s", tc.name, d)
		}
	}
	d := Destination{Address: addr("::ffff:10.1.0.1"), Port: 80, Weight: 3}
	if got, want := d.Key(), (DestinationKey{Address: addr("10.1.0.1"), Port: 80}); got != want {
		t.Errorf("Destination.Key = %v, want %v", got, want)
	}
}
