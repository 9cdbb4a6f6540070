package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Protocol is the transport protocol of a virtual service port.
// +kubebuilder:validation:Enum=TCP;UDP;SCTP
type Protocol string

// Protocols.
const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
)

// Scheduler is an IPVS scheduling algorithm, by a readable name. Each maps to one kernel
// scheduler module (in parentheses).
// +kubebuilder:validation:Enum=RoundRobin;WeightedRoundRobin;LeastConnection;WeightedLeastConnection;LocalityBasedLeastConnection;LocalityBasedLeastConnectionWithReplication;DestinationHashing;SourceHashing;Maglev;WeightedFailover;WeightedOverflow;ShortestExpectedDelay;NeverQueue;TwoRandomChoices
type Scheduler string

// Schedulers.
const (
	SchedulerRoundRobin                                  Scheduler = "RoundRobin"                                  // rr
	SchedulerWeightedRoundRobin                          Scheduler = "WeightedRoundRobin"                          // wrr
	SchedulerLeastConnection                             Scheduler = "LeastConnection"                             // lc
	SchedulerWeightedLeastConnection                     Scheduler = "WeightedLeastConnection"                     // wlc
	SchedulerLocalityBasedLeastConnection                Scheduler = "LocalityBasedLeastConnection"                // lblc
	SchedulerLocalityBasedLeastConnectionWithReplication Scheduler = "LocalityBasedLeastConnectionWithReplication" // lblcr
	SchedulerDestinationHashing                          Scheduler = "DestinationHashing"                          // dh
	SchedulerSourceHashing                               Scheduler = "SourceHashing"                               // sh
	SchedulerMaglev                                      Scheduler = "Maglev"                                      // mh
	SchedulerWeightedFailover                            Scheduler = "WeightedFailover"                            // fo
	SchedulerWeightedOverflow                            Scheduler = "WeightedOverflow"                            // ovf
	SchedulerShortestExpectedDelay                       Scheduler = "ShortestExpectedDelay"                       // sed
	SchedulerNeverQueue                                  Scheduler = "NeverQueue"                                  // nq
	SchedulerTwoRandomChoices                            Scheduler = "TwoRandomChoices"                            // twos
)

// SchedulerFlag is a flag of the SourceHashing and Maglev schedulers.
// Fallback: pick another real server when the hashed one is unavailable (weight 0 or
// overloaded). Port: hash the source port as well as the source address.
// +kubebuilder:validation:Enum=Fallback;Port
type SchedulerFlag string

// Scheduler flags.
const (
	SchedulerFlagFallback SchedulerFlag = "Fallback"
	SchedulerFlagPort     SchedulerFlag = "Port"
)

// ForwardingMethod is how IPVS forwards packets to real servers.
// +kubebuilder:validation:Enum=Masquerade;DirectRouting;Tunnel
type ForwardingMethod string

// Forwarding methods.
const (
	ForwardingMasquerade    ForwardingMethod = "Masquerade"
	ForwardingDirectRouting ForwardingMethod = "DirectRouting"
	ForwardingTunnel        ForwardingMethod = "Tunnel"
)

// TunnelType is the encapsulation of the Tunnel forwarding method.
// +kubebuilder:validation:Enum=IPIP;GUE;GRE
type TunnelType string

// Tunnel types.
const (
	TunnelIPIP TunnelType = "IPIP"
	TunnelGUE  TunnelType = "GUE"
	TunnelGRE  TunnelType = "GRE"
)

// TunnelChecksum selects checksums on GUE and GRE encapsulation.
// +kubebuilder:validation:Enum=None;Checksum;RemoteChecksum
type TunnelChecksum string

// Tunnel checksum modes.
const (
	TunnelChecksumNone   TunnelChecksum = "None"
	TunnelChecksumOn     TunnelChecksum = "Checksum"
	TunnelChecksumRemote TunnelChecksum = "RemoteChecksum"
)

// SessionAffinityType selects client affinity.
// +kubebuilder:validation:Enum=None;ClientIP
type SessionAffinityType string

// Session affinity types.
const (
	SessionAffinityNone     SessionAffinityType = "None"
	SessionAffinityClientIP SessionAffinityType = "ClientIP"
)

// TrafficPolicy selects which endpoints a node sends traffic to.
// +kubebuilder:validation:Enum=Cluster;Local
type TrafficPolicy string

// Traffic policies.
const (
	// TrafficPolicyCluster sends traffic to every endpoint.
	TrafficPolicyCluster TrafficPolicy = "Cluster"
	// TrafficPolicyLocal sends traffic only to endpoints on the same node.
	TrafficPolicyLocal TrafficPolicy = "Local"
)

// BackendKind is the kind of object a backendRef names.
// +kubebuilder:validation:Enum=Service;BackendPool
type BackendKind string

// Backend kinds.
const (
	BackendKindService     BackendKind = "Service"
	BackendKindBackendPool BackendKind = "BackendPool"
)

// EffectiveKind is the kind of object r names: Service when Kind is unset, Kind when it is
// Service or BackendPool, and "" for any other value. The schema rejects other values, so ""
// means the object bypassed validation: callers refuse the reference rather than guess (the
// cluster controller and the agent, through pkg/desired, must never read a kind differently).
func (r BackendRef) EffectiveKind() BackendKind {
	switch r.Kind {
	case "", BackendKindService:
		return BackendKindService
	case BackendKindBackendPool:
		return BackendKindBackendPool
	}
	return ""
}

// VirtualServicePort is one port of the virtual service.
type VirtualServicePort struct {
	// Name is an optional label for the port, shown in status and logs.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// Port is the port clients connect to.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Protocol is TCP, UDP or SCTP.
	// +required
	Protocol Protocol `json:"protocol"`
}

// BackendRef names a Service (whose EndpointSlices give the real servers) or a BackendPool in
// the VirtualService's namespace.
type BackendRef struct {
	// Kind is Service or BackendPool. Service when unset.
	// +optional
	Kind BackendKind `json:"kind,omitempty"`

	// Name of the Service or BackendPool.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Port: for a Service, the Service port whose endpoints' target port is used; for a
	// BackendPool, the port of servers that do not set one. The VirtualService port when unset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`

	// Weight of each real server from this reference (multiplied by a BackendPool server's
	// own weight). 1 when unset; 0 sends no new connections.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=256
	Weight *int32 `json:"weight,omitempty"`
}

// Tunnel configures the Tunnel forwarding method.
// +kubebuilder:validation:XValidation:rule="self.type != 'GUE' || has(self.port)",message="port is required for GUE tunnels"
// +kubebuilder:validation:XValidation:rule="self.type == 'GUE' || !has(self.port)",message="port is only valid for GUE tunnels"
// +kubebuilder:validation:XValidation:rule="self.type != 'IPIP' || !has(self.checksum)",message="checksum is only valid for GUE and GRE tunnels"
type Tunnel struct {
	// Type is IPIP, GUE (Linux >= 5.2) or GRE (Linux >= 5.3).
	// +required
	Type TunnelType `json:"type"`

	// Port is the UDP destination port of GUE encapsulation.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`

	// Checksum selects checksums on GUE and GRE encapsulation. None when unset.
	// +optional
	Checksum TunnelChecksum `json:"checksum,omitempty"`
}

// Forwarding selects how packets reach real servers.
// +kubebuilder:validation:XValidation:rule="self.method != 'Tunnel' || has(self.tunnel)",message="tunnel is required when method is Tunnel"
// +kubebuilder:validation:XValidation:rule="self.method == 'Tunnel' || !has(self.tunnel)",message="tunnel is only valid when method is Tunnel"
type Forwarding struct {
	// Method is Masquerade (NAT), DirectRouting or Tunnel.
	// +required
	Method ForwardingMethod `json:"method"`

	// Tunnel configures the Tunnel method.
	// +optional
	Tunnel *Tunnel `json:"tunnel,omitempty"`
}

// ClientIPConfig tunes ClientIP session affinity.
type ClientIPConfig struct {
	// TimeoutSeconds is how long a client stays with its real server after its last
	// connection. 10800 (3 hours) when unset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`

	// IPv4PrefixLength groups IPv4 clients by network. 32 when unset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	IPv4PrefixLength *int32 `json:"ipv4PrefixLength,omitempty"`

	// IPv6PrefixLength groups IPv6 clients by network. 128 when unset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	IPv6PrefixLength *int32 `json:"ipv6PrefixLength,omitempty"`
}

// SessionAffinity keeps a client on one real server (IPVS persistence).
// +kubebuilder:validation:XValidation:rule="self.type == 'ClientIP' || !has(self.clientIP)",message="clientIP is only valid when type is ClientIP"
type SessionAffinity struct {
	// Type is None or ClientIP.
	// +required
	Type SessionAffinityType `json:"type"`

	// ClientIP tunes ClientIP affinity.
	// +optional
	ClientIP *ClientIPConfig `json:"clientIP,omitempty"`
}

// Drain configures how terminating backends are drained.
type Drain struct {
	// TimeoutSeconds is how long a terminating backend keeps its existing connections (at
	// weight 0) before it is removed. 60 when unset; 0 removes at once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// VirtualServiceSpec is what users declare.
// +kubebuilder:validation:XValidation:rule="has(self.addresses) != has(self.firewallMark)",message="exactly one of addresses and firewallMark must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.addresses) || has(self.ports)",message="ports are required with addresses"
// +kubebuilder:validation:XValidation:rule="!has(self.firewallMark) || !has(self.ports)",message="ports must not be set with firewallMark"
// +kubebuilder:validation:XValidation:rule="!has(self.schedulerFlags) || (has(self.scheduler) && (self.scheduler == 'SourceHashing' || self.scheduler == 'Maglev'))",message="schedulerFlags require the SourceHashing or Maglev scheduler"
// +kubebuilder:validation:XValidation:rule="!has(self.onePacketScheduling) || !self.onePacketScheduling || (has(self.ports) && self.ports.all(p, p.protocol == 'UDP'))",message="onePacketScheduling requires every port to be UDP"
// +kubebuilder:validation:XValidation:rule="!has(self.trafficPolicy) || self.trafficPolicy != 'Local' || self.backendRefs.all(r, !has(r.kind) || r.kind == 'Service')",message="trafficPolicy Local applies only to Service backends"
// +kubebuilder:validation:XValidation:rule="!has(self.firewallMark) || self.backendRefs.all(r, (has(r.kind) && r.kind == 'BackendPool') || has(r.port))",message="backendRefs to Services must set port when firewallMark is used"
type VirtualServiceSpec struct {
	// Addresses are the virtual IPs: one or two canonical IP addresses, at most one per family
	// (dual-stack). Exactly one of addresses and firewallMark is set. Only unicast addresses a
	// node can route: not unspecified, loopback (another host on every node), link-local (not
	// routed, ambiguous without an interface), multicast or broadcast (no single host).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:MaxLength=45
	// +kubebuilder:validation:items:XValidation:rule="isIP(self)",message="must be a valid IP address"
	// +kubebuilder:validation:items:XValidation:rule="!isIP(self) || ip.isCanonical(self)",message="must be an IP address in canonical form"
	// +kubebuilder:validation:items:XValidation:rule="!isIP(self) || !ip(self).isUnspecified()",message="must not be the unspecified address"
	// +kubebuilder:validation:items:XValidation:rule="!isIP(self) || !ip(self).isLoopback()",message="must not be a loopback address"
	// +kubebuilder:validation:items:XValidation:rule="!isIP(self) || !ip(self).isLinkLocalUnicast()",message="must not be a link-local address"
	// +kubebuilder:validation:items:XValidation:rule="!isIP(self) || ip(self).isGlobalUnicast() || ip(self).isUnspecified() || ip(self).isLoopback() || ip(self).isLinkLocalUnicast()",message="must not be a multicast or broadcast address"
	// +kubebuilder:validation:XValidation:rule="self.size() < 2 || !isIP(self[0]) || !isIP(self[1]) || ip(self[0]).family() != ip(self[1]).family()",message="must contain at most one address per IP family"
	Addresses []string `json:"addresses,omitempty"`

	// FirewallMark makes this a firewall-mark service: packets marked (by iptables/nftables)
	// with this value are load balanced, whatever their address and port.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	FirewallMark *int64 `json:"firewallMark,omitempty"`

	// Ports of the virtual service, unique by port and protocol. Required with addresses.
	// +optional
	// +listType=map
	// +listMapKey=port
	// +listMapKey=protocol
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Ports []VirtualServicePort `json:"ports,omitempty"`

	// Weighting is how real servers' weights are set: Static (when unset) uses the backendRefs'
	// and BackendPool servers' weights; DelayAware scales the weight of each Service endpoint's
	// pod down as the pod's CPU delay rises (read from its kubelvs.io/TaskDelays condition, which
	// the pod's node agent writes), by a bounded function with hysteresis, never to 0 while the
	// pod is ready (see the README). Weights of a DelayAware VirtualService are 100 times the
	// static ones, so that the ratios stay exact.
	// +optional
	Weighting Weighting `json:"weighting,omitempty"`

	// BackendRefs are the Services and BackendPools (in this namespace) whose endpoints become
	// real servers.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, b.name == a.name && (has(b.kind) ? b.kind : 'Service') == (has(a.kind) ? a.kind : 'Service')))",message="must not repeat a kind and name"
	BackendRefs []BackendRef `json:"backendRefs"`

	// Scheduler is the IPVS scheduling algorithm. WeightedRoundRobin when unset.
	// +optional
	Scheduler Scheduler `json:"scheduler,omitempty"`

	// SchedulerFlags tune the SourceHashing and Maglev schedulers.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	SchedulerFlags []SchedulerFlag `json:"schedulerFlags,omitempty"`

	// OnePacketScheduling schedules every UDP datagram on its own (no connection entry).
	// Only for UDP ports.
	// +optional
	OnePacketScheduling bool `json:"onePacketScheduling,omitempty"`

	// Forwarding selects how packets reach real servers. Masquerade when unset.
	// DirectRouting and Tunnel keep the virtual service port: real servers listen on it.
	// +optional
	Forwarding *Forwarding `json:"forwarding,omitempty"`

	// SessionAffinity keeps a client on one real server. None when unset.
	// +optional
	SessionAffinity *SessionAffinity `json:"sessionAffinity,omitempty"`

	// TrafficPolicy: Cluster sends traffic to every endpoint, Local only to endpoints on the
	// node itself. Cluster when unset.
	// +optional
	TrafficPolicy TrafficPolicy `json:"trafficPolicy,omitempty"`

	// NodeSelector selects the nodes whose agents program this virtual service. All nodes when
	// unset.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Drain configures how terminating backends are drained.
	// +optional
	Drain *Drain `json:"drain,omitempty"`
}

// BackendCounts counts the distinct real servers (address and port) of a VirtualService.
type BackendCounts struct {
	// Total real servers known, in any state.
	Total int32 `json:"total"`
	// Ready real servers receive new connections.
	Ready int32 `json:"ready"`
	// Serving real servers are ready or terminating but still serving.
	Serving int32 `json:"serving"`
	// Terminating real servers are being drained.
	Terminating int32 `json:"terminating"`
}

// NodeCounts counts the nodes selected for a VirtualService and what they report.
type NodeCounts struct {
	// Selected nodes match the nodeSelector.
	Selected int32 `json:"selected"`
	// Programmed nodes report the current generation as programmed.
	Programmed int32 `json:"programmed"`
	// Failed nodes report the current generation as failed.
	Failed int32 `json:"failed"`
	// Summary is "programmed/selected", for display.
	// +kubebuilder:validation:MaxLength=32
	Summary string `json:"summary"`
}

// Weighting is how real servers' weights are set.
// +kubebuilder:validation:Enum=Static;DelayAware
type Weighting string

// Weightings.
const (
	WeightingStatic     Weighting = "Static"
	WeightingDelayAware Weighting = "DelayAware"
)

// EffectiveSettings are the settings in force once defaults are applied.
type EffectiveSettings struct {
	// +optional
	Weighting           Weighting           `json:"weighting,omitempty"`
	Scheduler           Scheduler           `json:"scheduler"`
	Forwarding          ForwardingMethod    `json:"forwarding"`
	TrafficPolicy       TrafficPolicy       `json:"trafficPolicy"`
	SessionAffinity     SessionAffinityType `json:"sessionAffinity"`
	DrainTimeoutSeconds int32               `json:"drainTimeoutSeconds"`
	// +optional
	PersistenceTimeoutSeconds *int32 `json:"persistenceTimeoutSeconds,omitempty"`
}

// VirtualServiceStatus is what the controller observed.
type VirtualServiceStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted, ResolvedRefs, Programmed, Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Addresses summarises the virtual addresses, for display.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Addresses string `json:"addresses,omitempty"`

	// Ports summarises the ports, for display.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Ports string `json:"ports,omitempty"`

	// Effective shows the settings in force, defaults applied.
	// +optional
	Effective *EffectiveSettings `json:"effective,omitempty"`

	// Backends counts real servers.
	// +optional
	Backends *BackendCounts `json:"backends,omitempty"`

	// Nodes counts selected and programmed nodes.
	// +optional
	Nodes *NodeCounts `json:"nodes,omitempty"`
}

// VirtualService is an IPVS virtual service: addresses and ports (or a firewall mark), a
// scheduler, a forwarding method and the backends that become its real servers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lvs,categories=kubelvs
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.status.addresses`
// +kubebuilder:printcolumn:name="Ports",type=string,JSONPath=`.status.ports`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes.summary`
// +kubebuilder:printcolumn:name="Backends",type=integer,JSONPath=`.status.backends.ready`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec VirtualServiceSpec `json:"spec"`
	// +optional
	Status VirtualServiceStatus `json:"status,omitempty"`
}

// VirtualServiceList is a list of VirtualServices.
//
// +kubebuilder:object:root=true
type VirtualServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualService `json:"items"`
}
