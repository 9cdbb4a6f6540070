package lvs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an address family, with the kernel's AF_* values.
type Family uint16

// Address families.
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
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// Bits is the length of the family's addresses in bits (0 for an unknown family).
func (f Family) Bits() int {
	switch f {
	case IPv4:
		return 32
	case IPv6:
		return 128
	}
	return 0
}

// FamilyOf returns the family of an address (an IPv4-mapped IPv6 address is IPv4), 0 when the
// address is invalid.
func FamilyOf(a netip.Addr) Family {
	a = a.Unmap()
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

// Protocol is a transport protocol, with the kernel's IPPROTO_* values.
type Protocol uint16

// Protocols IPVS balances.
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
		return ""
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// ErrUnknown is matched (errors.Is) by every Parse* error of this package.
var ErrUnknown = fmt.Errorf("lvs: unknown name")

// ParseProtocol parses "TCP", "UDP" or "SCTP" in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return 0, fmt.Errorf("%w: protocol %q (want TCP, UDP or SCTP)", ErrUnknown, s)
}

// ServiceFlags are a service's IP_VS_SVC_F_* flags.
type ServiceFlags uint32

// Service flags. The scheduler flags mean different things to different schedulers: for sh and
// mh, flag 1 is fallback (skip overloaded or weight-0 destinations) and flag 2 is port (hash the
// source port too).
const (
	FlagPersistent ServiceFlags = 0x0001
	// FlagHashed is set by the kernel on every service in its table; reads report it, writes
	// never send it.
	FlagHashed    ServiceFlags = 0x0002
	FlagOnePacket ServiceFlags = 0x0004
	FlagSched1    ServiceFlags = 0x0008
	FlagSched2    ServiceFlags = 0x0010
	FlagSched3    ServiceFlags = 0x0020

	FlagSHFallback = FlagSched1
	FlagSHPort     = FlagSched2
	FlagMHFallback = FlagSched1
	FlagMHPort     = FlagSched2

	// UserFlags are the flags a service can be configured with (all but FlagHashed).
	UserFlags = FlagPersistent | FlagOnePacket | FlagSched1 | FlagSched2 | FlagSched3
)

var flagNames = []struct {
	f    ServiceFlags
	name string
}{
	{FlagPersistent, "persistent"}, {FlagHashed, "hashed"}, {FlagOnePacket, "ops"},
	{FlagSched1, "flag-1"}, {FlagSched2, "flag-2"}, {FlagSched3, "flag-3"},
}

// String lists the flags by ipvsadm's names, comma-separated.
func (f ServiceFlags) String() string {
	var parts []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", uint32(f)))
	}
	return strings.Join(parts, ",")
}

// Forwarding is how a destination's packets are forwarded, with the kernel's
// IP_VS_CONN_F_FWD_MASK values.
type Forwarding uint32

// Forwarding methods.
const (
	Masquerade    Forwarding = 0 // NAT
	Local         Forwarding = 1 // the director itself
	Tunnel        Forwarding = 2 // IPIP, GUE or GRE, see TunnelType
	DirectRouting Forwarding = 3 // gatewaying, DSR
	Bypass        Forwarding = 4 // cache bypass
)

var forwardingNames = [...]string{"Masquerade", "Local", "Tunnel", "DirectRouting", "Bypass"}

func (m Forwarding) String() string {
	if int(m) < len(forwardingNames) {
		return forwardingNames[m]
	}
	return "Forwarding(" + strconv.Itoa(int(m)) + ")"
}

// ParseForwarding parses the names String returns in any case, and ipvsadm's ("masq", "nat",
// "route", "dr", "gatewaying", "ipip", "tunnel", "local", "bypass").
func ParseForwarding(s string) (Forwarding, error) {
	switch strings.ToLower(s) {
	case "masquerade", "masq", "nat":
		return Masquerade, nil
	case "local":
		return Local, nil
	case "tunnel", "ipip":
		return Tunnel, nil
	case "directrouting", "route", "dr", "gatewaying", "direct":
		return DirectRouting, nil
	case "bypass":
		return Bypass, nil
	}
	return 0, fmt.Errorf("%w: forwarding method %q", ErrUnknown, s)
}

// TunnelType is the encapsulation of a Tunnel destination (IP_VS_CONN_F_TUNNEL_TYPE_*). GUE
// needs Linux 5.2 and a tunnel port, GRE Linux 5.3.
type TunnelType uint8

// Tunnel types.
const (
	TunnelIPIP TunnelType = 0
	TunnelGUE  TunnelType = 1
	TunnelGRE  TunnelType = 2
)

var tunnelNames = [...]string{"IPIP", "GUE", "GRE"}

func (t TunnelType) String() string {
	if int(t) < len(tunnelNames) {
		return tunnelNames[t]
	}
	return "TunnelType(" + strconv.Itoa(int(t)) + ")"
}

// TunnelFlags are a tunnel's checksum options (IP_VS_TUNNEL_ENCAP_FLAG_*); zero is no checksum.
type TunnelFlags uint16

// Tunnel checksum flags.
const (
	TunnelChecksum       TunnelFlags = 1 << 0
	TunnelRemoteChecksum TunnelFlags = 1 << 1
)

// String is ipvsadm's name: nocsum, csum, remcsum (or both, comma-separated).
func (f TunnelFlags) String() string {
	switch f {
	case 0:
		return "nocsum"
	case TunnelChecksum:
		return "csum"
	case TunnelRemoteChecksum:
		return "remcsum"
	case TunnelChecksum | TunnelRemoteChecksum:
		return "csum,remcsum"
	}
	return fmt.Sprintf("0x%x", uint16(f))
}

// ServiceKey identifies a service in a table: an address, protocol and port, or a firewall mark
// and a family. It is comparable, for maps; use [Service.Key] to get it in canonical form.
type ServiceKey struct {
	Family       Family
	Protocol     Protocol   // 0 for a firewall-mark service
	Address      netip.Addr // invalid for a firewall-mark service
	Port         uint16     // 0 for a firewall-mark service
	FirewallMark uint32     // non-zero: a firewall-mark service
}

func (k ServiceKey) String() string {
	if k.FirewallMark != 0 {
		return "fwmark " + strconv.FormatUint(uint64(k.FirewallMark), 10) + "/" + k.Family.String()
	}
	return k.Protocol.String() + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

// Canonical returns k with Family filled in from Address when zero (IPv4 for a firewall-mark
// service without one), the address unmapped, and protocol, address and port cleared for a
// firewall-mark service.
func (k ServiceKey) Canonical() ServiceKey {
	if k.FirewallMark != 0 {
		f := k.Family
		if f == 0 {
			f = IPv4
		}
		return ServiceKey{Family: f, FirewallMark: k.FirewallMark}
	}
	k.Address = k.Address.Unmap()
	if k.Family == 0 {
		k.Family = FamilyOf(k.Address)
	}
	return k
}

// Service is the configuration of one IPVS virtual service: what the kernel stores and a write
// sets.
type Service struct {
	ServiceKey

	// Scheduler is the kernel scheduler's name: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, mh, fo,
	// ovf, sed, nq, twos. Empty means wlc (ipvsadm's default).
	Scheduler string
	Flags     ServiceFlags
	// TimeoutSeconds is the persistence timeout (with FlagPersistent).
	TimeoutSeconds uint32
	// PersistencePrefixLength groups clients for persistence by the first bits of their address.
	// Zero means the full length (32 or 128), as in ipvsadm.
	PersistencePrefixLength uint8
	// PersistenceEngine is the persistence engine's name ("sip"), or empty.
	PersistenceEngine string
}

// Key returns the service's identity in canonical form.
func (s *Service) Key() ServiceKey { return s.Canonical() }

// Destination is the configuration of one real server of a service.
type Destination struct {
	// Family is the family of Address; zero means Address's. It may differ from the service's
	// only for Tunnel destinations (Linux 3.18).
	Family  Family
	Address netip.Addr
	Port    uint16

	Forwarding Forwarding
	// Weight is the scheduling weight (at most 2^31-1); 0 stops new connections and keeps the
	// established ones.
	Weight uint32
	// UpperThreshold and LowerThreshold bound active connections (0: no bound).
	UpperThreshold uint32
	LowerThreshold uint32

	// TunnelType, TunnelPort (GUE's UDP port) and TunnelFlags apply to Tunnel forwarding.
	TunnelType  TunnelType
	TunnelPort  uint16
	TunnelFlags TunnelFlags
}

// DestinationKey identifies a destination within its service.
type DestinationKey struct {
	Address netip.Addr
	Port    uint16
}

// Key returns the destination's identity within its service (the address unmapped).
func (d *Destination) Key() DestinationKey {
	return DestinationKey{Address: d.Address.Unmap(), Port: d.Port}
}

func (k DestinationKey) String() string { return netip.AddrPortFrom(k.Address, k.Port).String() }
