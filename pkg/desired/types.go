// Package desired computes, without any I/O, the IPVS table one node should have from the
// cluster's VirtualServices, Services, EndpointSlices, BackendPools and the node's labels, and
// the node-independent verdict on each VirtualService (accepted or conflicting, references
// resolved, backend counts).
//
// The same functions serve the cluster controller (which writes status) and the node agent
// (which programs the kernel), so both always agree. The output types describe IPVS services
// and destinations in kernel terms (scheduler names, flag bits, forwarding codes) but do not
// depend on any netlink package: the agent maps them onto its IPVS client.
//
// Rules, in the order they apply:
//   - A VirtualService is invalid (not accepted) when its addresses, ports or nodeSelector do
//     not parse; the API server's schema normally rejects such objects before they exist.
//   - Conflicts: two VirtualServices that claim the same address:port/protocol (or firewall
//     mark) conflict. The oldest (creation time, then namespace/name) wins; a loser claims none
//     of its keys, so it blocks nobody else.
//   - Backends of each VirtualService port come from its backendRefs: for a Service, the
//     endpoints of its EndpointSlices on the target port behind the Service port (backendRef
//     port, else the VirtualService port); for a BackendPool, its servers.
//   - Per node: only VirtualServices whose nodeSelector matches the node's labels; with
//     trafficPolicy Local only endpoints on the node itself.
//   - Per IPVS service: destinations of the service's address family (any family with Tunnel
//     forwarding). Ready endpoints are active; when none is ready, serving terminating ones are
//     (the Kubernetes fallback). Other terminating endpoints and disabled pool servers stay as
//     draining destinations (weight 0) so their connections finish; the agent removes them after
//     the drain timeout or when they disappear. Not-ready, not-terminating endpoints are left
//     out.
//   - Weight: backendRef weight (default 1) times the pool server's weight (default 1). The
//     same address:port reached twice is one destination: active beats draining, then the
//     larger weight wins.
//   - DirectRouting and Tunnel cannot change the port: destinations use the service port.
package desired

import (
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Family is an address family, with the kernel's AF_* values.
type Family uint16

// Families.
const (
	IPv4 Family = 2  // AF_INET
	IPv6 Family = 10 // AF_INET6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(?)"
}

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Protocol is a transport protocol, with the kernel's IPPROTO_* values.
type Protocol uint16

// Protocols.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	case 0:
		return "any"
	}
	return "Protocol(?)"
}

// ServiceFlags are IPVS service flags, with the kernel's IP_VS_SVC_F_* bits.
type ServiceFlags uint32

// Service flags.
const (
	FlagPersistent ServiceFlags = 0x0001 // IP_VS_SVC_F_PERSISTENT
	FlagOnePacket  ServiceFlags = 0x0004 // IP_VS_SVC_F_ONEPACKET
	FlagSched1     ServiceFlags = 0x0008 // IP_VS_SVC_F_SCHED1: sh/mh fallback
	FlagSched2     ServiceFlags = 0x0010 // IP_VS_SVC_F_SCHED2: sh/mh port
	FlagSched3     ServiceFlags = 0x0020 // IP_VS_SVC_F_SCHED3
)

// Forwarding is a destination's forwarding method, with the kernel's IP_VS_CONN_F_* values.
type Forwarding uint32

// Forwarding methods.
const (
	Masquerade    Forwarding = 0 // IP_VS_CONN_F_MASQ
	Tunnel        Forwarding = 2 // IP_VS_CONN_F_TUNNEL
	DirectRouting Forwarding = 3 // IP_VS_CONN_F_DROUTE
)

// TunnelType is a tunnel encapsulation, with the kernel's IP_VS_CONN_F_TUNNEL_TYPE_* values.
type TunnelType uint8

// Tunnel types.
const (
	TunnelIPIP TunnelType = 0
	TunnelGUE  TunnelType = 1
	TunnelGRE  TunnelType = 2
)

// TunnelFlags are tunnel encapsulation flags, with the kernel's IP_VS_TUNNEL_ENCAP_FLAG_* bits.
type TunnelFlags uint16

// Tunnel flags.
const (
	TunnelFlagChecksum       TunnelFlags = 1 << 0
	TunnelFlagRemoteChecksum TunnelFlags = 1 << 1
)

// ServiceKey identifies an IPVS service: address, protocol and port, or a firewall mark and
// family.
type ServiceKey struct {
	Family       Family
	Protocol     Protocol   // 0 for firewall-mark services
	Address      netip.Addr // invalid for firewall-mark services
	Port         uint16     // 0 for firewall-mark services
	FirewallMark uint32     // 0 for address services
}

func (k ServiceKey) String() string {
	if k.FirewallMark != 0 {
		return "fwmark:" + itoa(uint64(k.FirewallMark)) + "/" + k.Family.String()
	}
	return netip.AddrPortFrom(k.Address, k.Port).String() + "/" + k.Protocol.String()
}

// Service is one IPVS virtual service a node should have.
type Service struct {
	ServiceKey

	// Owner is the VirtualService the service comes from, and Generation its generation.
	Owner      types.NamespacedName
	Generation int64

	// Scheduler is the kernel scheduler name (rr, wrr, ..., mh).
	Scheduler string
	Flags     ServiceFlags
	// Timeout is the persistence timeout (FlagPersistent), else 0.
	Timeout time.Duration
	// PersistencePrefixLength groups clients for persistence: bits of the client address
	// (the kernel wants an IPv4 netmask or an IPv6 prefix length).
	PersistencePrefixLength int

	// Destinations, sorted by address then port.
	Destinations []Destination
}

// Destination is one real server of an IPVS service.
type Destination struct {
	Address netip.Addr
	Port    uint16
	// Weight is 0 for draining destinations.
	Weight     uint32
	Forwarding Forwarding
	// TunnelType, TunnelPort and TunnelFlags apply to Tunnel forwarding.
	TunnelType  TunnelType
	TunnelPort  uint16
	TunnelFlags TunnelFlags
	// UpperThreshold and LowerThreshold bound active connections (0: no bound).
	UpperThreshold uint32
	LowerThreshold uint32
	// Draining destinations keep their connections, get no new ones, and are removed after
	// DrainTimeout (counted by the agent from when it first saw them draining).
	Draining     bool
	DrainTimeout time.Duration
}

// Table is the IPVS table one node should have.
type Table struct {
	Node string
	// Services, sorted by key.
	Services []Service
	// VirtualServices selected for the node (accepted, matching its labels), sorted; the agent
	// reports one status entry per item.
	VirtualServices []Selected
}

// Selected is a VirtualService selected for a node.
type Selected struct {
	Key        types.NamespacedName
	Generation int64
	// Services is the number of IPVS services it yields on the node.
	Services int
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
