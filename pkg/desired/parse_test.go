package desired

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

var parseOpts = cmp.Options{addrComparer,
	cmp.AllowUnexported(portKey{}, scheduling{}, forwarding{}, affinity{})}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkParse compares a parser's value and error with the expected ones.
func checkParse[T any](t *testing.T, want T, wantErr string, got T, err error) {
	t.Helper()
	if diff := cmp.Diff(wantErr, errString(err)); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if err != nil {
		return
	}
	if diff := cmp.Diff(want, got, parseOpts); diff != "" {
		t.Errorf("value (-want +got):\n%s", diff)
	}
}

func TestEffectiveSettings(t *testing.T) {
	def := v1alpha1.EffectiveSettings{Weighting: "Static", Scheduler: "WeightedRoundRobin", Forwarding: "Masquerade", TrafficPolicy: "Cluster",
		SessionAffinity: "None", DrainTimeoutSeconds: 60}
	tests := []struct {
		name string
		spec v1alpha1.VirtualServiceSpec
		want v1alpha1.EffectiveSettings
	}{
		{"defaults", v1alpha1.VirtualServiceSpec{}, def},
		{"everything set", v1alpha1.VirtualServiceSpec{
			Scheduler: v1alpha1.SchedulerMaglev, TrafficPolicy: v1alpha1.TrafficPolicyLocal,
			Forwarding:      &v1alpha1.Forwarding{Method: v1alpha1.ForwardingDirectRouting},
			SessionAffinity: &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP, ClientIP: &v1alpha1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](5)}},
			Drain:           &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](0)},
			Weighting:       v1alpha1.WeightingDelayAware,
		}, v1alpha1.EffectiveSettings{Weighting: "DelayAware", Scheduler: "Maglev", Forwarding: "DirectRouting", TrafficPolicy: "Local",
			SessionAffinity: "ClientIP", DrainTimeoutSeconds: 0, PersistenceTimeoutSeconds: ptr.To[int32](5)}},
		{"ClientIP without settings: the default persistence timeout", v1alpha1.VirtualServiceSpec{
			SessionAffinity: &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP},
		}, v1alpha1.EffectiveSettings{Weighting: "Static", Scheduler: "WeightedRoundRobin", Forwarding: "Masquerade", TrafficPolicy: "Cluster",
			SessionAffinity: "ClientIP", DrainTimeoutSeconds: 60, PersistenceTimeoutSeconds: ptr.To[int32](10800)}},
		{"affinity None", v1alpha1.VirtualServiceSpec{SessionAffinity: &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityNone}}, def},
		{"forwarding without a method", v1alpha1.VirtualServiceSpec{Forwarding: &v1alpha1.Forwarding{}}, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, effectiveSettings(&tt.spec)); diff != "" {
				t.Errorf("effectiveSettings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	p80 := []v1alpha1.VirtualServicePort{tcp(80)}
	type target struct {
		Addrs []netip.Addr
		Mark  uint32
		Ports []portKey
	}
	tests := []struct {
		name    string
		spec    v1alpha1.VirtualServiceSpec
		want    target
		wantErr string
	}{
		{"address and port", v1alpha1.VirtualServiceSpec{Addresses: []string{"10.0.0.1"}, Ports: p80},
			target{Addrs: []netip.Addr{a("10.0.0.1")}, Ports: []portKey{{80, lvs.TCP}}}, ""},
		{"firewall mark", v1alpha1.VirtualServiceSpec{FirewallMark: ptr.To[int64](4294967295)}, target{Mark: 4294967295}, ""},
		{"neither", v1alpha1.VirtualServiceSpec{Ports: p80}, target{}, "exactly one of addresses and firewallMark must be set"},
		{"both", v1alpha1.VirtualServiceSpec{Addresses: []string{"10.0.0.1"}, FirewallMark: ptr.To[int64](1)}, target{},
			"exactly one of addresses and firewallMark must be set"},
		{"mark with ports", v1alpha1.VirtualServiceSpec{FirewallMark: ptr.To[int64](1), Ports: p80}, target{},
			"ports must not be set with firewallMark"},
		{"mark 0", v1alpha1.VirtualServiceSpec{FirewallMark: ptr.To[int64](0)}, target{}, "firewallMark 0 is out of range"},
		{"mark beyond 32 bits", v1alpha1.VirtualServiceSpec{FirewallMark: ptr.To[int64](1 << 32)}, target{}, "firewallMark 4294967296 is out of range"},
		{"addresses without ports", v1alpha1.VirtualServiceSpec{Addresses: []string{"10.0.0.1"}}, target{}, "ports are required with addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs, mark, ports, err := parseTarget(&tt.spec)
			checkParse(t, tt.want, tt.wantErr, target{addrs, mark, ports}, err)
		})
	}
}

func TestParseAddresses(t *testing.T) {
	tests := []struct {
		in      []string
		want    []netip.Addr
		wantErr string
	}{
		{[]string{"10.0.0.1"}, []netip.Addr{a("10.0.0.1")}, ""},
		{[]string{"10.0.0.1", "2001:db8::1"}, []netip.Addr{a("10.0.0.1"), a("2001:db8::1")}, ""},
		{[]string{"192.168.1.1"}, []netip.Addr{a("192.168.1.1")}, ""},         // private addresses are routable
		{[]string{"fd00::1"}, []netip.Addr{a("fd00::1")}, ""},                 // so are unique local ones
		{[]string{"0.0.0.1"}, []netip.Addr{a("0.0.0.1")}, ""},                 // the unspecified address's neighbour
		{[]string{"223.255.255.255"}, []netip.Addr{a("223.255.255.255")}, ""}, // just below multicast
		{[]string{"240.0.0.1"}, []netip.Addr{a("240.0.0.1")}, ""},             // reserved, but unicast to Linux
		{[]string{"255.255.255.254"}, []netip.Addr{a("255.255.255.254")}, ""}, // broadcast's neighbour
		{[]string{"169.253.255.255"}, []netip.Addr{a("169.253.255.255")}, ""}, // below link-local
		{[]string{"fec0::1"}, []netip.Addr{a("fec0::1")}, ""},                 // above fe80::/10
		{[]string{"128.0.0.1"}, []netip.Addr{a("128.0.0.1")}, ""},             // not 127/8
		{[]string{"10.0.0.1", "10.0.0.2"}, nil, "addresses must contain at most one address per IP family"},
		{[]string{"2001:db8:0::1"}, nil, `address "2001:db8:0::1" is not a canonical IP address`},
		{[]string{"::ffff:10.0.0.1"}, nil, `address "::ffff:10.0.0.1" is not a canonical IP address`},
		{[]string{"fe80::1%eth0"}, nil, `address "fe80::1%eth0" is not a canonical IP address`},
		{[]string{"zz"}, nil, `address "zz" is not a canonical IP address`},
		{[]string{"0.0.0.0"}, nil, `address "0.0.0.0" must not be the unspecified address`},
		{[]string{"127.0.0.1"}, nil, `address "127.0.0.1" must not be a loopback address`},
		{[]string{"169.254.0.1"}, nil, `address "169.254.0.1" must not be a link-local address`},
		{[]string{"febf::1"}, nil, `address "febf::1" must not be a link-local address`},
		{[]string{"224.0.0.5"}, nil, `address "224.0.0.5" must not be a multicast or broadcast address`},
		{[]string{"ff0e::1"}, nil, `address "ff0e::1" must not be a multicast or broadcast address`},
		{[]string{"255.255.255.255"}, nil, `address "255.255.255.255" must not be a multicast or broadcast address`},
	}
	for _, tt := range tests {
		t.Run(tt.in[0], func(t *testing.T) {
			got, err := parseAddresses(tt.in)
			checkParse(t, tt.want, tt.wantErr, got, err)
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		name    string
		in      []v1alpha1.VirtualServicePort
		want    []portKey
		wantErr string
	}{
		{"each protocol", []v1alpha1.VirtualServicePort{tcp(80), udp(80), {Port: 9, Protocol: v1alpha1.ProtocolSCTP}},
			[]portKey{{80, lvs.TCP}, {80, lvs.UDP}, {9, lvs.SCTP}}, ""},
		{"port 0", []v1alpha1.VirtualServicePort{tcp(0)}, nil, "port 0/TCP is invalid"},
		{"port 65536", []v1alpha1.VirtualServicePort{tcp(65536)}, nil, "port 65536/TCP is invalid"},
		{"unknown protocol", []v1alpha1.VirtualServicePort{{Port: 80, Protocol: "ICMP"}}, nil, "port 80/ICMP is invalid"},
		{"repeated", []v1alpha1.VirtualServicePort{tcp(80), tcp(80)}, nil, "port 80/TCP is repeated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePorts(tt.in)
			checkParse(t, tt.want, tt.wantErr, got, err)
		})
	}
}

func TestParseScheduling(t *testing.T) {
	flags := []v1alpha1.SchedulerFlag{v1alpha1.SchedulerFlagFallback, v1alpha1.SchedulerFlagPort}
	tests := []struct {
		name      string
		sched     v1alpha1.Scheduler
		flags     []v1alpha1.SchedulerFlag
		onePacket bool
		ports     []portKey
		want      scheduling
		wantErr   string
	}{
		{"wrr", v1alpha1.SchedulerWeightedRoundRobin, nil, false, nil, scheduling{name: "wrr"}, ""},
		{"maglev with flags", v1alpha1.SchedulerMaglev, flags, false, nil, scheduling{name: "mh", flags: lvs.FlagSched1 | lvs.FlagSched2}, ""},
		{"sh with fallback", v1alpha1.SchedulerSourceHashing, flags[:1], false, nil, scheduling{name: "sh", flags: lvs.FlagSched1}, ""},
		{"one packet on UDP", v1alpha1.SchedulerRoundRobin, nil, true, []portKey{{53, lvs.UDP}}, scheduling{name: "rr", flags: lvs.FlagOnePacket}, ""},
		{"one packet on TCP", v1alpha1.SchedulerRoundRobin, nil, true, []portKey{{53, lvs.UDP}, {53, lvs.TCP}}, scheduling{},
			"onePacketScheduling requires every port to be UDP"},
		{"unknown", "Random", nil, false, nil, scheduling{}, `unknown scheduler "Random"`},
		{"kernel name", "wrr", nil, false, nil, scheduling{}, `unknown scheduler "wrr"`},
		{"flags on wrr", v1alpha1.SchedulerWeightedRoundRobin, flags, false, nil, scheduling{},
			"schedulerFlags require the SourceHashing or Maglev scheduler"},
		{"unknown flag", v1alpha1.SchedulerMaglev, []v1alpha1.SchedulerFlag{"Sticky"}, false, nil, scheduling{}, `unknown scheduler flag "Sticky"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScheduling(tt.sched, tt.flags, tt.onePacket, tt.ports)
			checkParse(t, tt.want, tt.wantErr, got, err)
		})
	}
}

func TestParseForwarding(t *testing.T) {
	tun := func(typ v1alpha1.TunnelType, port *int32, sum v1alpha1.TunnelChecksum) *v1alpha1.Forwarding {
		return &v1alpha1.Forwarding{Method: v1alpha1.ForwardingTunnel, Tunnel: &v1alpha1.Tunnel{Type: typ, Port: port, Checksum: sum}}
	}
	tests := []struct {
		name    string
		method  v1alpha1.ForwardingMethod
		spec    *v1alpha1.Forwarding
		want    forwarding
		wantErr string
	}{
		{"masquerade by default", v1alpha1.ForwardingMasquerade, nil, forwarding{method: lvs.Masquerade}, ""},
		{"direct routing", v1alpha1.ForwardingDirectRouting, &v1alpha1.Forwarding{Method: v1alpha1.ForwardingDirectRouting},
			forwarding{method: lvs.DirectRouting}, ""},
		{"IPIP", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelIPIP, nil, ""), forwarding{method: lvs.Tunnel, tunnelType: lvs.TunnelIPIP}, ""},
		{"GUE with remote checksum", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGUE, ptr.To[int32](6080), v1alpha1.TunnelChecksumRemote),
			forwarding{method: lvs.Tunnel, tunnelType: lvs.TunnelGUE, tunnelPort: 6080, tunnelFlags: lvs.TunnelRemoteChecksum}, ""},
		{"GRE with checksum", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGRE, nil, v1alpha1.TunnelChecksumOn),
			forwarding{method: lvs.Tunnel, tunnelType: lvs.TunnelGRE, tunnelFlags: lvs.TunnelChecksum}, ""},
		{"GRE, checksum None", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGRE, nil, v1alpha1.TunnelChecksumNone),
			forwarding{method: lvs.Tunnel, tunnelType: lvs.TunnelGRE}, ""},
		{"Tunnel without settings", v1alpha1.ForwardingTunnel, &v1alpha1.Forwarding{Method: v1alpha1.ForwardingTunnel}, forwarding{},
			"tunnel is required when method is Tunnel"},
		{"tunnel settings with Masquerade", v1alpha1.ForwardingMasquerade,
			&v1alpha1.Forwarding{Method: v1alpha1.ForwardingMasquerade, Tunnel: &v1alpha1.Tunnel{Type: v1alpha1.TunnelIPIP}}, forwarding{},
			"tunnel is only valid when method is Tunnel"},
		{"GUE without port", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGUE, nil, ""), forwarding{}, "port is required for GUE tunnels"},
		{"GUE port 0", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGUE, ptr.To[int32](0), ""), forwarding{}, "tunnel port 0 is out of range"},
		{"port on IPIP", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelIPIP, ptr.To[int32](5555), ""), forwarding{}, "port is only valid for GUE tunnels"},
		{"checksum on IPIP", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelIPIP, nil, v1alpha1.TunnelChecksumOn), forwarding{},
			"checksum is only valid for GUE and GRE tunnels"},
		{"unknown checksum", v1alpha1.ForwardingTunnel, tun(v1alpha1.TunnelGRE, nil, "Always"), forwarding{}, `unknown tunnel checksum "Always"`},
		{"unknown tunnel", v1alpha1.ForwardingTunnel, tun("VXLAN", nil, ""), forwarding{}, `unknown tunnel type "VXLAN"`},
		{"unknown method", "NAT", &v1alpha1.Forwarding{Method: "NAT"}, forwarding{}, `unknown forwarding method "NAT"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseForwarding(tt.method, tt.spec)
			checkParse(t, tt.want, tt.wantErr, got, err)
		})
	}
}

func TestParseAffinity(t *testing.T) {
	clientIP := func(c *v1alpha1.ClientIPConfig) *v1alpha1.SessionAffinity {
		return &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP, ClientIP: c}
	}
	none := affinity{prefix4: 32, prefix6: 128}
	tests := []struct {
		name    string
		typ     v1alpha1.SessionAffinityType
		spec    *v1alpha1.SessionAffinity
		want    affinity
		wantErr string
	}{
		{"none", v1alpha1.SessionAffinityNone, nil, none, ""},
		{"ClientIP defaults", v1alpha1.SessionAffinityClientIP, clientIP(nil),
			affinity{persistent: true, timeoutSeconds: 10800, prefix4: 32, prefix6: 128}, ""},
		{"ClientIP tuned", v1alpha1.SessionAffinityClientIP, clientIP(&v1alpha1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](86400),
			IPv4PrefixLength: ptr.To[int32](1), IPv6PrefixLength: ptr.To[int32](64)}),
			affinity{persistent: true, timeoutSeconds: 86400, prefix4: 1, prefix6: 64}, ""},
		{"clientIP with None", v1alpha1.SessionAffinityNone, &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityNone,
			ClientIP: &v1alpha1.ClientIPConfig{}}, none, "clientIP is only valid when type is ClientIP"},
		{"timeout 86401", v1alpha1.SessionAffinityClientIP, clientIP(&v1alpha1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](86401)}), none,
			"sessionAffinity.clientIP.timeoutSeconds 86401 is out of range [1, 86400]"},
		{"IPv4 prefix 0", v1alpha1.SessionAffinityClientIP, clientIP(&v1alpha1.ClientIPConfig{IPv4PrefixLength: ptr.To[int32](0)}), none,
			"sessionAffinity.clientIP.ipv4PrefixLength 0 is out of range [1, 32]"},
		{"IPv6 prefix 129", v1alpha1.SessionAffinityClientIP, clientIP(&v1alpha1.ClientIPConfig{IPv6PrefixLength: ptr.To[int32](129)}), none,
			"sessionAffinity.clientIP.ipv6PrefixLength 129 is out of range [1, 128]"},
		{"unknown", "Cookie", &v1alpha1.SessionAffinity{Type: "Cookie"}, none, `unknown session affinity "Cookie"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAffinity(tt.typ, tt.spec)
			checkParse(t, tt.want, tt.wantErr, got, err)
		})
	}
}

func TestParseSmallParts(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"drain 0", parseDrain(&v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](0)}), ""},
		{"drain unset", parseDrain(nil), ""},
		{"drain 86401", parseDrain(&v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](86401)}), "drain.timeoutSeconds 86401 is out of range [0, 86400]"},
		{"refs of both kinds", parseBackendRefs([]v1alpha1.BackendRef{{Name: "a"}, {Kind: "Service", Name: "b"}, {Kind: "BackendPool", Name: "c"}}), ""},
		{"ref to a Pod", parseBackendRefs([]v1alpha1.BackendRef{{Name: "a"}, {Kind: "Pod", Name: "b"}}),
			`backendRefs[1]: unknown kind "Pod" (want Service or BackendPool)`},
		{"kind in lower case", parseBackendRefs([]v1alpha1.BackendRef{{Kind: "service", Name: "a"}}),
			`backendRefs[0]: unknown kind "service" (want Service or BackendPool)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.wantErr, errString(tt.err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	for p, want := range map[v1alpha1.TrafficPolicy]bool{"Cluster": false, "Local": true} {
		if got, err := parseTrafficPolicy(p); err != nil || got != want {
			t.Errorf("parseTrafficPolicy(%s) = %v, %v; want %v", p, got, err, want)
		}
	}
	if _, err := parseTrafficPolicy("Node"); errString(err) != `unknown traffic policy "Node"` {
		t.Errorf("parseTrafficPolicy(Node): %v", err)
	}
}

func TestParseSelector(t *testing.T) {
	lbl := map[string]string{"zone": "a"}
	tests := []struct {
		name    string
		in      *metav1.LabelSelector
		matches bool
		wantErr string
	}{
		{"unset: every node", nil, true, ""},
		{"matching labels", &metav1.LabelSelector{MatchLabels: lbl}, true, ""},
		{"other labels", &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}}, false, ""},
		{"bad operator", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}, false,
			`nodeSelector is invalid: "Bogus" is not a valid label selector operator`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := parseSelector(tt.in)
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error (-want +got):\n%s", diff)
			}
			if err == nil && sel.Matches(labelsOf(lbl)) != tt.matches {
				t.Errorf("Matches = %v, want %v", !tt.matches, tt.matches)
			}
		})
	}
}
