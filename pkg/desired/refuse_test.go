package desired

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// TestRefused: a VirtualService that bypassed the schema's validation (created before a rule
// existed, or written straight to etcd) is not accepted, and says why; it claims no key and
// yields no IPVS service. This file uses only API that predates the lvs vocabulary, so it
// also runs against older versions of the package.
func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		vs   *v1alpha1.VirtualService
		want string // the Accepted message
	}{
		{"backendRef of an unknown kind", vs("x", 0, refs(v1alpha1.BackendRef{Kind: "Pod", Name: "web"})),
			`backendRefs[0]: unknown kind "Pod" (want Service or BackendPool)`},
		// Addresses no node can use, as the schema refuses them.
		{"unspecified IPv4", vs("x", 0, addrs("0.0.0.0")), `address "0.0.0.0" must not be the unspecified address`},
		{"unspecified IPv6", vs("x", 0, addrs("::")), `address "::" must not be the unspecified address`},
		{"loopback IPv4", vs("x", 0, addrs("127.0.0.1")), `address "127.0.0.1" must not be a loopback address`},
		{"loopback IPv4, end of 127/8", vs("x", 0, addrs("127.255.255.254")), `address "127.255.255.254" must not be a loopback address`},
		{"loopback IPv6", vs("x", 0, addrs("::1")), `address "::1" must not be a loopback address`},
		{"link-local IPv4", vs("x", 0, addrs("169.254.1.1")), `address "169.254.1.1" must not be a link-local address`},
		{"link-local IPv6", vs("x", 0, addrs("fe80::1")), `address "fe80::1" must not be a link-local address`},
		{"link-local multicast IPv4", vs("x", 0, addrs("224.0.0.5")), `address "224.0.0.5" must not be a multicast or broadcast address`},
		{"multicast IPv4", vs("x", 0, addrs("239.1.1.1")), `address "239.1.1.1" must not be a multicast or broadcast address`},
		{"multicast IPv6", vs("x", 0, addrs("ff05::2")), `address "ff05::2" must not be a multicast or broadcast address`},
		{"link-local multicast IPv6", vs("x", 0, addrs("ff02::1")), `address "ff02::1" must not be a multicast or broadcast address`},
		{"broadcast", vs("x", 0, addrs("255.255.255.255")), `address "255.255.255.255" must not be a multicast or broadcast address`},
		// Other schema rules the old single parse did not repeat.
		{"ports with a firewall mark", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
			s.Addresses = nil
			s.FirewallMark = ptr.To[int64](5)
		})), "ports must not be set with firewallMark"},
		{"one-packet scheduling on TCP", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) { s.OnePacketScheduling = true })),
			"onePacketScheduling requires every port to be UDP"},
		{"affinity timeout 0", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
			s.SessionAffinity = &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP,
				ClientIP: &v1alpha1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](0)}}
		})), "sessionAffinity.clientIP.timeoutSeconds 0 is out of range [1, 86400]"},
		{"IPv4 prefix 33", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
			s.SessionAffinity = &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP,
				ClientIP: &v1alpha1.ClientIPConfig{IPv4PrefixLength: ptr.To[int32](33)}}
		})), "sessionAffinity.clientIP.ipv4PrefixLength 33 is out of range [1, 32]"},
		{"negative drain timeout", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
			s.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](-1)}
		})), "drain.timeoutSeconds -1 is out of range [0, 86400]"},
		{"unknown traffic policy", vs("x", 0, spec(func(s *v1alpha1.VirtualServiceSpec) { s.TrafficPolicy = "Node" })),
			`unknown traffic policy "Node"`},
		{"lower-case protocol", vs("x", 0, ports(v1alpha1.VirtualServicePort{Port: 80, Protocol: "tcp"})), "port 80/tcp is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cluster{VirtualServices: []*v1alpha1.VirtualService{tt.vs}, Services: []*corev1.Service{svc("web")}}
			m := NewModel(c)
			ev, _ := m.Evaluate(key("x"))
			want := Verdict{Reason: v1alpha1.ReasonInvalid, Message: tt.want}
			if diff := cmp.Diff(want, ev.Accepted); diff != "" {
				t.Errorf("Accepted (-want +got):\n%s", diff)
			}
			if n := len(m.ForNode(node1).Services); n != 0 {
				t.Errorf("ForNode yields %d services for a refused VirtualService", n)
			}
		})
	}
}

// TestPoolServersNoNodeCanUse: BackendPool servers the schema refuses are left out and
// ResolvedRefs says why; the usable ones are still programmed.
func TestPoolServersNoNodeCanUse(t *testing.T) {
	c := &Cluster{
		VirtualServices: []*v1alpha1.VirtualService{vs("x", 0, refs(v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "p"}))},
		BackendPools: []*v1alpha1.BackendPool{pool("p",
			v1alpha1.RealServer{Address: "192.0.2.1"}, v1alpha1.RealServer{Address: "224.0.0.5"},
			v1alpha1.RealServer{Address: "fe80::1"}, v1alpha1.RealServer{Address: "255.255.255.255"})},
	}
	m := NewModel(c)
	ev, _ := m.Evaluate(key("x"))
	want := Verdict{Reason: "InvalidBackend", Message: "BackendPool p: server 224.0.0.5 must not be a multicast or broadcast address; " +
		"BackendPool p: server fe80::1 must not be a link-local address; BackendPool p: server 255.255.255.255 must not be a multicast or broadcast address"}
	if diff := cmp.Diff(want, ev.ResolvedRefs); diff != "" {
		t.Errorf("ResolvedRefs (-want +got):\n%s", diff)
	}
	if !ev.Accepted.OK || ev.Backends.Total != 1 {
		t.Errorf("Accepted %+v, backends %+v: want accepted with the one usable server", ev.Accepted, ev.Backends)
	}
	tab := m.ForNode(node1)
	if len(tab.Services) != 1 || len(tab.Services[0].Destinations) != 1 || tab.Services[0].Destinations[0].Address.String() != "192.0.2.1" {
		t.Errorf("ForNode: %+v, want one service with 192.0.2.1 only", tab.Services)
	}
}
