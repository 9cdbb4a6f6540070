package desired

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

const v4, v6 = discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6

var node1 = Node{Name: "node-1", Labels: map[string]string{"zone": "a", "lb": "true"}}

func TestForNode(t *testing.T) {
	tests := []struct {
		name    string
		cluster Cluster
		node    Node
		want    *Table
	}{{
		name: "ready endpoints become weighted destinations",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0)},
			Services:        []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				readyEP("10.1.0.2", "node-2"), readyEP("10.1.0.1", "node-1"))},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1), dest("10.1.0.2", 8080, 1))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "no ready endpoint: serving terminating endpoints take traffic, non-serving ones drain",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0)},
			Services:        []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				termEP("10.1.0.1", "", true), termEP("10.1.0.2", "", false), notReadyEP("10.1.0.3", ""))},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1), draining("10.1.0.2", 8080))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "with ready endpoints, terminating ones drain at weight 0 and not-ready ones are left out",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](5)}
			}))},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				readyEP("10.1.0.1", ""), termEP("10.1.0.2", "", true), notReadyEP("10.1.0.3", ""))},
		},
		want: &Table{
			Services: []Service{withDrainTimeout(5*time.Second, tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1),
				Destination{Destination: lvs.Destination{Address: a("10.1.0.2"), Port: 8080}, Draining: true, DrainTimeout: 5 * time.Second}))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "trafficPolicy Local keeps only this node's endpoints",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.TrafficPolicy = v1alpha1.TrafficPolicyLocal
			}))},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				readyEP("10.1.0.1", "node-1"), readyEP("10.1.0.2", "node-2"), readyEP("10.1.0.3", ""))},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "trafficPolicy Local: the fallback to terminating endpoints is decided per node",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.TrafficPolicy = v1alpha1.TrafficPolicyLocal
			}))},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				termEP("10.1.0.1", "node-1", true), readyEP("10.1.0.2", "node-2"))},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "nodeSelector that does not match the node: nothing to program",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}}
				})),
				vs("api", 1, addrs("10.0.0.2"), spec(func(s *v1alpha1.VirtualServiceSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "lb", Operator: metav1.LabelSelectorOpExists}}}
				})),
			},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080,
				readyEP("10.1.0.1", ""))},
		},
		want: &Table{
			Services:        []Service{tsvc("api", "10.0.0.2", 80, dest("10.1.0.1", 8080, 1))},
			VirtualServices: sel("api", 1),
		},
	}, {
		name: "BackendPool: weights multiply, thresholds pass through, disabled servers drain, ports default",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, refs(
				v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "ext", Weight: ptr.To[int32](3)}))},
			BackendPools: []*v1alpha1.BackendPool{pool("ext",
				v1alpha1.RealServer{Address: "192.0.2.1", Weight: ptr.To[int32](2), UpperThreshold: ptr.To[int32](100), LowerThreshold: ptr.To[int32](50)},
				v1alpha1.RealServer{Address: "192.0.2.2", Port: ptr.To[int32](8443)},
				v1alpha1.RealServer{Address: "192.0.2.3", Enabled: ptr.To(false)},
				v1alpha1.RealServer{Address: "192.0.2.4", Weight: ptr.To[int32](0)},
			)},
		},
		want: &Table{
			Services: []Service{tsvc("web", "10.0.0.1", 80,
				ld(lvs.Destination{Address: a("192.0.2.1"), Port: 80, Weight: 6, UpperThreshold: 100, LowerThreshold: 50}),
				dest("192.0.2.2", 8443, 3),
				draining("192.0.2.3", 80),
				dest("192.0.2.4", 80, 0),
			)},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "dual-stack: each address family gets the endpoints of its family",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, addrs("10.0.0.1", "fd00::1"))},
			Services:        []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web-4", "web", v4, "", 8080, readyEP("10.1.0.1", "")),
				slice("web-6", "web", v6, "", 8080, readyEP("fd01::1", "")),
			},
		},
		want: &Table{
			Services: []Service{
				tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1)),
				tsvc("web", "fd00::1", 80, dest("fd01::1", 8080, 1)),
			},
			VirtualServices: sel("web", 2),
		},
	}, {
		name: "Service ports map to the endpoints' named target ports; backendRef port picks the Service port",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, ports(tcp(80), tcp(443)), refs(
				v1alpha1.BackendRef{Name: "web"}, v1alpha1.BackendRef{Name: "metrics", Port: ptr.To[int32](9000)}))},
			Services: []*corev1.Service{
				svc("web",
					corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
					corev1.ServicePort{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}),
				svc("metrics", corev1.ServicePort{Port: 9000, Protocol: corev1.ProtocolTCP}),
			},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web-http", "web", v4, "http", 8080, readyEP("10.1.0.1", "")),
				slice("web-https", "web", v4, "https", 8443, readyEP("10.1.0.1", "")),
				slice("metrics-1", "metrics", v4, "", 9090, readyEP("10.2.0.1", "")),
			},
		},
		want: &Table{
			Services: []Service{
				tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1), dest("10.2.0.1", 9090, 1)),
				tsvc("web", "10.0.0.1", 443, dest("10.1.0.1", 8443, 1), dest("10.2.0.1", 9090, 1)),
			},
			VirtualServices: sel("web", 2),
		},
	}, {
		name: "the same endpoint in two slices or two refs is one destination: active wins, then the larger weight",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, refs(
				v1alpha1.BackendRef{Name: "web"},
				v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "p", Weight: ptr.To[int32](5)}))},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web-1", "web", v4, "", 8080, termEP("10.1.0.1", "", true), readyEP("10.1.0.2", "")),
				slice("web-2", "web", v4, "", 8080, readyEP("10.1.0.1", ""), readyEP("10.1.0.2", "")),
			},
			BackendPools: []*v1alpha1.BackendPool{pool("p", v1alpha1.RealServer{Address: "10.1.0.2", Port: ptr.To[int32](8080)})},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1), dest("10.1.0.2", 8080, 5))},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "DirectRouting keeps the service port; scheduler, flags and persistence come through",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.Forwarding = &v1alpha1.Forwarding{Method: v1alpha1.ForwardingDirectRouting}
				s.Scheduler = v1alpha1.SchedulerMaglev
				s.SchedulerFlags = []v1alpha1.SchedulerFlag{v1alpha1.SchedulerFlagFallback, v1alpha1.SchedulerFlagPort}
				s.SessionAffinity = &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP,
					ClientIP: &v1alpha1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](600), IPv4PrefixLength: ptr.To[int32](24)}}
			}))},
			Services:       []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080, readyEP("10.1.0.1", ""))},
		},
		want: &Table{
			Services: []Service{{
				Service: lvs.Service{
					ServiceKey: lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.TCP, Address: a("10.0.0.1"), Port: 80},
					Scheduler:  "mh", Flags: lvs.FlagSched1 | lvs.FlagSched2 | lvs.FlagPersistent,
					TimeoutSeconds: 600, PersistencePrefixLength: 24,
				},
				Owner: key("web"), Generation: 1, DrainTimeout: DefaultDrainTimeout,
				Destinations: []Destination{ld(lvs.Destination{Address: a("10.1.0.1"), Port: 80, Weight: 1, Forwarding: lvs.DirectRouting})},
			}},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "GUE tunnel: destinations of either family, tunnel settings on each",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.Forwarding = &v1alpha1.Forwarding{Method: v1alpha1.ForwardingTunnel, Tunnel: &v1alpha1.Tunnel{
					Type: v1alpha1.TunnelGUE, Port: ptr.To[int32](6080), Checksum: v1alpha1.TunnelChecksumRemote}}
			}))},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web-4", "web", v4, "", 8080, readyEP("10.1.0.1", "")),
				slice("web-6", "web", v6, "", 8080, readyEP("fd01::1", "")),
			},
		},
		want: &Table{
			Services: []Service{tsvc("web", "10.0.0.1", 80,
				ld(lvs.Destination{Address: a("10.1.0.1"), Port: 80, Weight: 1, Forwarding: lvs.Tunnel, TunnelType: lvs.TunnelGUE, TunnelPort: 6080, TunnelFlags: lvs.TunnelRemoteChecksum}),
				ld(lvs.Destination{Address: a("fd01::1"), Port: 80, Weight: 1, Forwarding: lvs.Tunnel, TunnelType: lvs.TunnelGUE, TunnelPort: 6080, TunnelFlags: lvs.TunnelRemoteChecksum}),
			)},
			VirtualServices: sel("web", 1),
		},
	}, {
		name: "firewall mark: one service per family that has backends; UDP one-packet scheduling",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				vs("mark", 0, addrs(), ports(), refs(v1alpha1.BackendRef{Name: "web", Port: ptr.To[int32](80)}),
					spec(func(s *v1alpha1.VirtualServiceSpec) { s.FirewallMark = ptr.To[int64](16) })),
				vs("dns", 1, addrs("10.0.0.53"), ports(udp(53)), refs(v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "dns"}),
					spec(func(s *v1alpha1.VirtualServiceSpec) { s.OnePacketScheduling = true })),
			},
			Services: []*corev1.Service{svc("web")},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("web-6", "web", v6, "", 8080, readyEP("fd01::1", "")),
			},
			BackendPools: []*v1alpha1.BackendPool{pool("dns", v1alpha1.RealServer{Address: "192.0.2.53"})},
		},
		want: &Table{
			Services: []Service{
				{Service: lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv4, Protocol: lvs.UDP, Address: a("10.0.0.53"), Port: 53},
					Scheduler: "wrr", Flags: lvs.FlagOnePacket},
					Owner: key("dns"), Generation: 1, DrainTimeout: DefaultDrainTimeout,
					Destinations: []Destination{dest("192.0.2.53", 53, 1)}},
				{Service: lvs.Service{ServiceKey: lvs.ServiceKey{Family: lvs.IPv6, FirewallMark: 16}, Scheduler: "wrr"},
					Owner: key("mark"), Generation: 1, DrainTimeout: DefaultDrainTimeout,
					Destinations: []Destination{dest("fd01::1", 8080, 1)}},
			},
			VirtualServices: []Selected{{Key: key("dns"), Generation: 1, Services: 1}, {Key: key("mark"), Generation: 1, Services: 1}},
		},
	}, {
		name: "conflict: the oldest VirtualService wins the address:port; the newer one is not programmed",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				vs("newer", 5, ports(tcp(80), tcp(443))),
				vs("older", 1),
			},
			Services:       []*corev1.Service{svc("web", corev1.ServicePort{Port: 80}, corev1.ServicePort{Port: 443})},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080, readyEP("10.1.0.1", ""))},
		},
		want: &Table{
			Services:        []Service{tsvc("older", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1))},
			VirtualServices: sel("older", 1),
		},
	}, {
		name: "a VirtualService that lost a conflict blocks nobody: A beats B on :80, C keeps :443",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				vs("a", 0),
				vs("b", 1, ports(tcp(80), tcp(443))),
				vs("c", 2, ports(tcp(443))),
			},
			Services:       []*corev1.Service{svc("web", corev1.ServicePort{Port: 80}, corev1.ServicePort{Port: 443})},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", v4, "", 8080, readyEP("10.1.0.1", ""))},
		},
		want: &Table{
			Services: []Service{
				tsvc("a", "10.0.0.1", 80, dest("10.1.0.1", 8080, 1)),
				tsvc("c", "10.0.0.1", 443, dest("10.1.0.1", 8080, 1)),
			},
			VirtualServices: []Selected{{Key: key("a"), Generation: 1, Services: 1}, {Key: key("c"), Generation: 1, Services: 1}},
		},
	}, {
		name: "same creation time: namespace/name order decides",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("zeta", 0), vs("alpha", 0)},
			Services:        []*corev1.Service{svc("web")},
		},
		want: &Table{
			Services:        []Service{tsvc("alpha", "10.0.0.1", 80)},
			VirtualServices: sel("alpha", 1),
		},
	}, {
		name: "invalid VirtualServices (non-canonical address, bad selector) are skipped and claim nothing",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{
				vs("bad-ip", 0, addrs("fd00:0::1")),
				vs("bad-selector", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}
				})),
				vs("good", 3),
			},
			Services: []*corev1.Service{svc("web")},
		},
		want: &Table{
			Services:        []Service{tsvc("good", "10.0.0.1", 80)},
			VirtualServices: sel("good", 1),
		},
	}, {
		name: "missing Service and missing port: the service exists without destinations",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, refs(v1alpha1.BackendRef{Name: "gone"})),
				vs("api", 1, addrs("10.0.0.2"), ports(tcp(81)))},
			Services: []*corev1.Service{svc("web")},
		},
		want: &Table{
			Services:        []Service{tsvc("web", "10.0.0.1", 80), tsvc("api", "10.0.0.2", 81)},
			VirtualServices: []Selected{{Key: key("api"), Generation: 1, Services: 1}, {Key: key("web"), Generation: 1, Services: 1}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := tt.node
			if node.Name == "" {
				node = node1
			}
			tt.want.Node = node.Name
			got := ForNode(&tt.cluster, node)
			if diff := cmp.Diff(tt.want, got, addrComparer); diff != "" {
				t.Errorf("ForNode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	type verdicts struct {
		Accepted, ResolvedRefs Verdict
		Backends               v1alpha1.BackendCounts
		Effective              v1alpha1.EffectiveSettings
	}
	eff := v1alpha1.EffectiveSettings{Weighting: "Static", Scheduler: "WeightedRoundRobin", Forwarding: "Masquerade", TrafficPolicy: "Cluster",
		SessionAffinity: "None", DrainTimeoutSeconds: 60}
	accepted := Verdict{OK: true, Reason: "Accepted", Message: "valid and conflict-free"}
	resolved := Verdict{OK: true, Reason: "ResolvedRefs", Message: "all backendRefs resolved"}
	tests := []struct {
		name    string
		cluster Cluster
		want    map[string]verdicts
	}{{
		name: "counts distinct addresses over ports: ready, serving, terminating",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, ports(tcp(80), tcp(443)))},
			Services:        []*corev1.Service{svc("web", corev1.ServicePort{Name: "a", Port: 80}, corev1.ServicePort{Name: "b", Port: 443})},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("s1", "web", v4, "a", 8080, readyEP("10.1.0.1", ""), termEP("10.1.0.2", "", true), termEP("10.1.0.3", "", false), notReadyEP("10.1.0.4", "")),
				slice("s2", "web", v4, "b", 8443, readyEP("10.1.0.1", ""), readyEP("10.1.0.2", "")),
			},
		},
		want: map[string]verdicts{"web": {accepted, resolved, v1alpha1.BackendCounts{Total: 4, Ready: 2, Serving: 2, Terminating: 1}, eff}},
	}, {
		name: "missing Service, missing pool and missing port are reported together",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, refs(
				v1alpha1.BackendRef{Name: "gone"}, v1alpha1.BackendRef{Name: "web", Port: ptr.To[int32](81)},
				v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "nopool"}))},
			Services: []*corev1.Service{svc("web")},
		},
		want: map[string]verdicts{"web": {accepted, Verdict{Reason: "BackendNotFound",
			Message: "Service gone not found; Service web has no port 81/TCP; BackendPool nopool not found"}, v1alpha1.BackendCounts{}, eff}},
	}, {
		name: "only a port missing: PortNotFound",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, ports(udp(80)))},
			Services:        []*corev1.Service{svc("web")},
		},
		want: map[string]verdicts{"web": {accepted, Verdict{Reason: "PortNotFound", Message: "Service web has no port 80/UDP"}, v1alpha1.BackendCounts{}, eff}},
	}, {
		name: "conflict names the winner and the key; invalid objects say why",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("b", 2), vs("a", 1),
				vs("c", 0, addrs("10.0.0.1", "10.0.0.2"))},
			Services: []*corev1.Service{svc("web")},
		},
		want: map[string]verdicts{
			"a": {Verdict{Reason: "Accepted", OK: true, Message: "valid and conflict-free"}, resolved, v1alpha1.BackendCounts{}, eff},
			"b": {Verdict{Reason: "Conflicted", Message: "conflicts with the older VirtualService default/a on 10.0.0.1/80/TCP"}, resolved, v1alpha1.BackendCounts{}, eff},
			"c": {Verdict{Reason: "Invalid", Message: "addresses must contain at most one address per IP family"},
				Verdict{Reason: "Invalid", Message: "not checked: the VirtualService is invalid"}, v1alpha1.BackendCounts{}, eff},
		},
	}, {
		name: "effective settings show the defaults applied",
		cluster: Cluster{
			VirtualServices: []*v1alpha1.VirtualService{vs("web", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.SessionAffinity = &v1alpha1.SessionAffinity{Type: v1alpha1.SessionAffinityClientIP}
				s.TrafficPolicy = v1alpha1.TrafficPolicyLocal
				s.Drain = &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](0)}
			}))},
			Services: []*corev1.Service{svc("web")},
		},
		want: map[string]verdicts{"web": {accepted, resolved, v1alpha1.BackendCounts{}, v1alpha1.EffectiveSettings{
			Weighting: "Static", Scheduler: "WeightedRoundRobin", Forwarding: "Masquerade", TrafficPolicy: "Local", SessionAffinity: "ClientIP",
			DrainTimeoutSeconds: 0, PersistenceTimeoutSeconds: ptr.To[int32](10800)}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewModel(&tt.cluster)
			got := map[string]verdicts{}
			for _, e := range m.Evaluations() {
				got[e.Key.Name] = verdicts{e.Accepted, e.ResolvedRefs, e.Backends, e.Effective}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Evaluations() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConflictsWith(t *testing.T) {
	m := NewModel(&Cluster{VirtualServices: []*v1alpha1.VirtualService{vs("new", 9), vs("old", 1)}})
	e, ok := m.Evaluate(key("new"))
	if !ok || e.ConflictsWith == nil || *e.ConflictsWith != key("old") {
		t.Fatalf("Evaluate(new) = %+v, %v; want a conflict with default/old", e, ok)
	}
	if _, ok := m.Evaluate(key("missing")); ok {
		t.Fatal("Evaluate(missing) found a VirtualService")
	}
	if m.Selects(key("new"), node1) || !m.Selects(key("old"), node1) {
		t.Fatal("Selects: want only the winner selected")
	}
}

func TestNilAndMalformedInputsDoNotPanic(t *testing.T) {
	c := &Cluster{
		VirtualServices: []*v1alpha1.VirtualService{nil, vs("x", 0, ports(), addrs()), vs("y", 0, addrs("zz")),
			vs("z", 0, spec(func(s *v1alpha1.VirtualServiceSpec) {
				s.Forwarding = &v1alpha1.Forwarding{Method: v1alpha1.ForwardingTunnel}
			}))},
		Services:       []*corev1.Service{nil},
		EndpointSlices: []*discoveryv1.EndpointSlice{nil, slice("s", "web", v4, "", 80, ep{addr: "not-an-ip"})},
		BackendPools:   []*v1alpha1.BackendPool{nil},
	}
	tab := ForNode(c, node1)
	if len(tab.Services) != 0 {
		t.Fatalf("want no services from invalid input, got %+v", tab.Services)
	}
}
