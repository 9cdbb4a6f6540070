package ipvs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an address family: [IPv4] or [IPv6].
type Family uint16

// Address families (AF_INET, AF_INET6).
const (
	IPv4 Family = 2
	IPv6 Family = 10
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// familyOf is the family of an address, 0 when invalid.
func familyOf(a netip.Addr) Family {
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

// Protocol is a service's transport protocol (an IP protocol number).
type Protocol uint16

// Transport protocols IPVS balances.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	case 0:
		return ""
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "tcp", "udp" or "sctp" (any case).
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return 0, fmt.Errorf("%w: unknown protocol %q", ErrInvalid, s)
}

// ServiceFlags are a service's IP_VS_SVC_F_* flags.
type ServiceFlags uint32

// Service flags. The scheduler flags mean different things to different schedulers: for sh
// and mh, flag 1 is fallback (skip overloaded or weight-0 destinations) and flag 2 is port
// (hash the source port too).
const (
	FlagPersistent ServiceFlags = 0x0001
	// FlagHashed is set by the kernel on every service in its table; it is reported by reads and
	// never sent.
	FlagHashed     ServiceFlags = 0x0002
	FlagOnePacket  ServiceFlags = 0x0004
	FlagSched1     ServiceFlags = 0x0008
	FlagSched2     ServiceFlags = 0x0010
	FlagSched3     ServiceFlags = 0x0020
	FlagSHFallback              = FlagSched1
	FlagSHPort                  = FlagSched2
	FlagMHFallback              = FlagSched1
	FlagMHPort                  = FlagSched2
)

var flagNames = []struct {
	f    ServiceFlags
	name string
}{
	{FlagPersistent, "persistent"}, {FlagHashed, "hashed"}, {FlagOnePacket, "ops"},
	{FlagSched1, "flag-1"}, {FlagSched2, "flag-2"}, {FlagSched3, "flag-3"},
}

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

// ForwardMethod is how a destination's packets are forwarded (IP_VS_CONN_F_FWD_MASK).
type ForwardMethod uint32

// Forwarding methods.
const (
	Masquerade  ForwardMethod = 0 // NAT
	Local       ForwardMethod = 1 // the local node
	Tunnel      ForwardMethod = 2 // IPIP, GUE or GRE, see TunnelType
	DirectRoute ForwardMethod = 3 // gatewaying / DSR
	Bypass      ForwardMethod = 4 // cache bypass
)

var forwardNames = [...]string{"masq", "local", "tunnel", "route", "bypass"}

func (m ForwardMethod) String() string {
	if int(m) < len(forwardNames) {
		return forwardNames[m]
	}
	return "fwd(" + strconv.Itoa(int(m)) + ")"
}

// ParseForwardMethod parses the names String returns ("masq", "local", "tunnel", "route",
// "bypass"; also "nat", "dr", "ipip" and "gatewaying").
func ParseForwardMethod(s string) (ForwardMethod, error) {
	switch strings.ToLower(s) {
	case "masq", "masquerade", "nat":
		return Masquerade, nil
	case "local":
		return Local, nil
	case "tunnel", "ipip":
		return Tunnel, nil
	case "route", "dr", "gatewaying", "direct":
		return DirectRoute, nil
	case "bypass":
		return Bypass, nil
	}
	return 0, fmt.Errorf("%w: unknown forwarding method %q", ErrInvalid, s)
}

// TunnelType is the encapsulation of a [Tunnel] destination.
type TunnelType uint8

// Tunnel types (IP_VS_CONN_F_TUNNEL_TYPE_*). GUE needs Linux 5.2 and a tunnel port, GRE 5.3.
const (
	TunnelIPIP TunnelType = 0
	TunnelGUE  TunnelType = 1
	TunnelGRE  TunnelType = 2
)

var tunnelNames = [...]string{"ipip", "gue", "gre"}

func (t TunnelType) String() string {
	if int(t) < len(tunnelNames) {
		return tunnelNames[t]
	}
	return "tun(" + strconv.Itoa(int(t)) + ")"
}

// TunnelFlags are a tunnel's checksum options (IP_VS_TUNNEL_ENCAP_FLAG_*); zero is nocsum.
type TunnelFlags uint16

// Tunnel checksum flags.
const (
	TunnelCsum    TunnelFlags = 1 << 0
	TunnelRemCsum TunnelFlags = 1 << 1
)

// Stats are IPVS counters and rate estimates.
type Stats struct {
	Conns      uint64 `json:"conns"`
	InPackets  uint64 `json:"inPackets"`
	OutPackets uint64 `json:"outPackets"`
	InBytes    uint64 `json:"inBytes"`
	OutBytes   uint64 `json:"outBytes"`
	CPS        uint64 `json:"cps"`
	InPPS      uint64 `json:"inPPS"`
	OutPPS     uint64 `json:"outPPS"`
	InBPS      uint64 `json:"inBPS"`
	OutBPS     uint64 `json:"outBPS"`
}

// Service is a virtual service: an address, port and protocol, or a firewall mark.
type Service struct {
	// Family is the service's address family. It may be left zero when Address is set (it is
	// then Address's family); a firewall-mark service with Family zero is IPv4.
	Family   Family     `json:"family"`
	Protocol Protocol   `json:"protocol,omitempty"` // TCP, UDP or SCTP; zero for a firewall-mark service
	Address  netip.Addr `json:"address,omitzero"`
	Port     uint16     `json:"port,omitempty"`
	FWMark   uint32     `json:"fwmark,omitempty"` // non-zero: a firewall-mark service (no address, port, protocol)

	// Scheduler is the scheduler's name: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, mh, fo, ovf,
	// sed, nq, twos. Empty means "wlc" (the kernel's default in ipvsadm).
	Scheduler string       `json:"scheduler"`
	Flags     ServiceFlags `json:"flags"`
	// Timeout is the persistence timeout in seconds (with FlagPersistent).
	Timeout uint32 `json:"timeoutSeconds"`
	// Netmask is the persistence netmask as a prefix length: clients in one prefix go to the
	// same destination. Zero means the full length (32 or 128), as in ipvsadm.
	Netmask uint8 `json:"netmask"`
	// PersistenceEngine is the persistence engine's name ("sip"), or empty.
	PersistenceEngine string `json:"persistenceEngine,omitempty"`

	// Read only: the 64-bit counters (IPVS_SVC_ATTR_STATS64) and the 32-bit ones
	// (IPVS_SVC_ATTR_STATS, which wrap).
	Stats   Stats `json:"stats"`
	Stats32 Stats `json:"stats32"`
}

// ServiceKey identifies a service in the kernel's table; it is comparable, for maps.
type ServiceKey struct {
	Family   Family
	Protocol Protocol
	Address  netip.Addr
	Port     uint16
	FWMark   uint32
}

// Key returns the identity of s, with Family filled in and, for a firewall-mark service,
// protocol, address and port cleared.
func (s *Service) Key() ServiceKey {
	if s.FWMark != 0 {
		return ServiceKey{Family: s.family(), FWMark: s.FWMark}
	}
	return ServiceKey{Family: s.family(), Protocol: s.Protocol, Address: s.Address.Unmap(), Port: s.Port}
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("fwm %d/%s", k.FWMark, k.Family)
	}
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Address, k.Port))
}

func (s *Service) String() string { k := s.Key(); return k.String() }

func (s *Service) family() Family {
	if s.Family != 0 {
		return s.Family
	}
	if f := familyOf(s.Address.Unmap()); f != 0 {
		return f
	}
	return IPv4
}

// Destination is a real server of a service.
type Destination struct {
	// Family is the address family of Address; zero means Address's. It may differ from the
	// service's only for tunnelled destinations (Linux 3.18).
	Family  Family        `json:"family"`
	Address netip.Addr    `json:"address"`
	Port    uint16        `json:"port"`
	Forward ForwardMethod `json:"forward"`
	// Weight is the scheduling weight; 0 stops new connections (it does not drain old ones).
	Weight         int    `json:"weight"`
	UpperThreshold uint32 `json:"upperThreshold"` // 0: no limit
	LowerThreshold uint32 `json:"lowerThreshold"`

	TunnelType  TunnelType  `json:"tunnelType,omitempty"`
	TunnelPort  uint16      `json:"tunnelPort,omitempty"` // GUE's UDP port
	TunnelFlags TunnelFlags `json:"tunnelFlags,omitempty"`

	// Read only.
	ActiveConns     uint32 `json:"activeConns"`
	InactiveConns   uint32 `json:"inactiveConns"`
	PersistentConns uint32 `json:"persistentConns"`
	Stats           Stats  `json:"stats"`
	Stats32         Stats  `json:"stats32"`
}

// DestinationKey identifies a destination within its service.
type DestinationKey struct {
	Address netip.Addr
	Port    uint16
}

// Key returns the identity of d within its service.
func (d *Destination) Key() DestinationKey {
	return DestinationKey{Address: d.Address.Unmap(), Port: d.Port}
}

func (d *Destination) family() Family {
	if d.Family != 0 {
		return d.Family
	}
	return familyOf(d.Address.Unmap())
}

func (d *Destination) String() string { return netip.AddrPortFrom(d.Address, d.Port).String() }

// TableEntry is one service of the table with its destinations.
type TableEntry struct {
	Service      Service       `json:"service"`
	Destinations []Destination `json:"destinations"`
}

// Info is what IPVS reports about itself.
type Info struct {
	// Version is the IPVS version code (0x010201 is 1.2.1).
	Version uint32 `json:"version"`
	// ConnTableSize is the number of buckets of the connection hash table.
	ConnTableSize uint32 `json:"connTableSize"`
}

// VersionString formats Version as "1.2.1".
func (i Info) VersionString() string {
	return fmt.Sprintf("%d.%d.%d", i.Version>>16&0xff, i.Version>>8&0xff, i.Version&0xff)
}

// Timeouts are the global connection timeouts, in whole seconds. In SetTimeouts a zero value
// leaves that timeout unchanged.
type Timeouts struct {
	TCPSeconds    uint32 `json:"tcp"`
	TCPFinSeconds uint32 `json:"tcpFin"`
	UDPSeconds    uint32 `json:"udp"`
}

// DaemonState is the role of a connection-sync daemon.
type DaemonState uint32

// Sync daemon roles (IP_VS_STATE_*).
const (
	DaemonMaster DaemonState = 1
	DaemonBackup DaemonState = 2
)

func (s DaemonState) String() string {
	switch s {
	case DaemonMaster:
		return "master"
	case DaemonBackup:
		return "backup"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Daemon is a connection-synchronisation daemon (master sends, backup receives).
type Daemon struct {
	State     DaemonState `json:"state"`
	Interface string      `json:"interface"`
	SyncID    uint32      `json:"syncID"`
	// Optional (zero: the kernel's defaults): maximum UDP payload, multicast group (IPv4 or
	// IPv6), base port and TTL.
	MaxLen uint16     `json:"maxLen,omitempty"`
	Group  netip.Addr `json:"group,omitzero"`
	Port   uint16     `json:"port,omitempty"`
	TTL    uint8      `json:"ttl,omitempty"`
}

// --- conversions between the exported types and the wire sets ---

func addrBytes(a netip.Addr) [16]byte {
	var b [16]byte
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
	} else if a.Is6() {
		b = a.As16()
	}
	return b
}

func addrFrom(f Family, b [16]byte) netip.Addr {
	switch f {
	case IPv4:
		return netip.AddrFrom4([4]byte(b[:4]))
	case IPv6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// checkAddr verifies that an address is valid and of the family.
func checkAddr(what string, f Family, a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() {
		return fmt.Errorf("%w: %s address is missing", ErrInvalid, what)
	}
	if f != IPv4 && f != IPv6 {
		return fmt.Errorf("%w: %s family %d is neither IPv4 nor IPv6", ErrInvalid, what, f)
	}
	if familyOf(a) != f {
		return fmt.Errorf("%w: %s address %s is not %s", ErrInvalid, what, a, f)
	}
	if a.Zone() != "" {
		return fmt.Errorf("%w: %s address %s has a zone", ErrInvalid, what, a)
	}
	return nil
}

func (s *Service) wireKey() (*wireServiceKey, error) {
	f := s.family()
	k := &wireServiceKey{AF: uint16(f), FWMark: s.FWMark}
	if s.FWMark != 0 {
		if f != IPv4 && f != IPv6 {
			return nil, fmt.Errorf("%w: service family %d is neither IPv4 nor IPv6", ErrInvalid, f)
		}
		return k, nil
	}
	if err := checkAddr("service", f, s.Address); err != nil {
		return nil, err
	}
	switch s.Protocol {
	case TCP, UDP, SCTP:
	default:
		return nil, fmt.Errorf("%w: service protocol %d is not TCP, UDP or SCTP", ErrInvalid, s.Protocol)
	}
	k.Protocol, k.Addr, k.Port = uint16(s.Protocol), addrBytes(s.Address), s.Port
	return k, nil
}

const (
	maxNameLen    = 15 // IP_VS_SCHEDNAME_MAXLEN and IP_VS_PENAME_MAXLEN less the NUL
	userFlagsMask = FlagPersistent | FlagOnePacket | FlagSched1 | FlagSched2 | FlagSched3
)

func (s *Service) wire() (*wireService, error) {
	k, err := s.wireKey()
	if err != nil {
		return nil, err
	}
	sched := s.Scheduler
	if sched == "" {
		sched = "wlc"
	}
	if len(sched) > maxNameLen || strings.IndexByte(sched, 0) >= 0 {
		return nil, fmt.Errorf("%w: scheduler name %q", ErrInvalid, sched)
	}
	if len(s.PersistenceEngine) > maxNameLen || strings.IndexByte(s.PersistenceEngine, 0) >= 0 {
		return nil, fmt.Errorf("%w: persistence engine name %q", ErrInvalid, s.PersistenceEngine)
	}
	if s.Flags&^(userFlagsMask|FlagHashed) != 0 {
		return nil, fmt.Errorf("%w: unknown service flags %s", ErrInvalid, s.Flags&^(userFlagsMask|FlagHashed))
	}
	w := &wireService{
		AF: k.AF, Protocol: k.Protocol, Addr: k.Addr, Port: k.Port, FWMark: k.FWMark,
		SchedName: sched,
		// The kernel sets "hashed" itself and refuses to hash a service that claims it.
		Flags:   wireFlags{Flags: uint32(s.Flags & userFlagsMask), Mask: ^uint32(0)},
		Timeout: s.Timeout,
		PEName:  s.PersistenceEngine,
	}
	f := Family(k.AF)
	bitsLen := uint8(32)
	if f == IPv6 {
		bitsLen = 128
	}
	n := s.Netmask
	if n == 0 {
		n = bitsLen
	}
	if n > bitsLen {
		return nil, fmt.Errorf("%w: persistence netmask /%d is longer than %s addresses", ErrInvalid, n, f)
	}
	if f == IPv6 {
		binary.NativeEndian.PutUint32(w.Netmask[:], uint32(n))
	} else {
		binary.BigEndian.PutUint32(w.Netmask[:], ^uint32(0)<<(32-uint32(n)))
	}
	return w, nil
}

func statsFrom64(w *wireStats) Stats {
	if w == nil {
		return Stats{}
	}
	return Stats{w.Conns, w.InPkts, w.OutPkts, w.InBytes, w.OutBytes, w.CPS, w.InPPS, w.OutPPS, w.InBPS, w.OutBPS}
}

func statsFrom32(w *wireStats32) Stats {
	if w == nil {
		return Stats{}
	}
	return Stats{uint64(w.Conns), uint64(w.InPkts), uint64(w.OutPkts), w.InBytes, w.OutBytes,
		uint64(w.CPS), uint64(w.InPPS), uint64(w.OutPPS), uint64(w.InBPS), uint64(w.OutBPS)}
}

func serviceFrom(w *wireService) (Service, error) {
	f := Family(w.AF)
	if f != IPv4 && f != IPv6 {
		return Service{}, fmt.Errorf("%w: service with address family %d", ErrInvalid, w.AF)
	}
	s := Service{
		Family:            f,
		FWMark:            w.FWMark,
		Scheduler:         w.SchedName,
		Flags:             ServiceFlags(w.Flags.Flags),
		Timeout:           w.Timeout,
		PersistenceEngine: w.PEName,
		Stats:             statsFrom64(w.Stats64),
		Stats32:           statsFrom32(w.Stats),
	}
	if w.FWMark == 0 {
		s.Protocol, s.Address, s.Port = Protocol(w.Protocol), addrFrom(f, w.Addr), w.Port
	}
	if w.Stats64 == nil && w.Stats != nil {
		s.Stats = s.Stats32 // kernels before 4.1 have no 64-bit counters
	}
	if f == IPv6 {
		s.Netmask = uint8(min(binary.NativeEndian.Uint32(w.Netmask[:]), 128))
	} else {
		s.Netmask = uint8(bits.LeadingZeros32(^binary.BigEndian.Uint32(w.Netmask[:])))
	}
	return s, nil
}

func (d *Destination) wireKey(svc Family) (wireDestKey, error) {
	f := d.family()
	if f == 0 {
		f = svc
	}
	if err := checkAddr("destination", f, d.Address); err != nil {
		return wireDestKey{}, err
	}
	return wireDestKey{Addr: addrBytes(d.Address), Port: d.Port, AddrFamily: uint16(f)}, nil
}

func (d *Destination) wire(svc Family) (wireDestReq, error) {
	k, err := d.wireKey(svc)
	if err != nil {
		return wireDestReq{}, err
	}
	if d.Forward > Bypass {
		return wireDestReq{}, fmt.Errorf("%w: forwarding method %d", ErrInvalid, d.Forward)
	}
	if d.Weight < 0 || d.Weight > 1<<31-1 {
		return wireDestReq{}, fmt.Errorf("%w: weight %d is outside 0..%d", ErrInvalid, d.Weight, 1<<31-1)
	}
	if d.TunnelType > TunnelGRE {
		return wireDestReq{}, fmt.Errorf("%w: tunnel type %d", ErrInvalid, d.TunnelType)
	}
	if Family(k.AddrFamily) != svc && d.Forward != Tunnel {
		return wireDestReq{}, fmt.Errorf("%w: destination %s is %s in an %s service: only tunnelled destinations may differ",
			ErrInvalid, d.Address, Family(k.AddrFamily), svc)
	}
	return wireDestReq{
		Addr: k.Addr, Port: k.Port, AddrFamily: k.AddrFamily,
		FwdMethod: uint32(d.Forward), Weight: int32(d.Weight),
		UThresh: d.UpperThreshold, LThresh: d.LowerThreshold,
		TunType: uint8(d.TunnelType), TunPort: d.TunnelPort, TunFlags: uint16(d.TunnelFlags),
	}, nil
}

func destFrom(w *wireDest, svc Family) (Destination, error) {
	f := svc
	if w.AddrFamily != 0 {
		f = Family(w.AddrFamily)
	}
	if f != IPv4 && f != IPv6 {
		return Destination{}, fmt.Errorf("%w: destination with address family %d", ErrInvalid, f)
	}
	d := Destination{
		Family:          f,
		Address:         addrFrom(f, w.Addr),
		Port:            w.Port,
		Forward:         ForwardMethod(w.FwdMethod & 0x7),
		Weight:          int(w.Weight),
		UpperThreshold:  w.UThresh,
		LowerThreshold:  w.LThresh,
		TunnelType:      TunnelType(w.TunType),
		TunnelPort:      w.TunPort,
		TunnelFlags:     TunnelFlags(w.TunFlags),
		ActiveConns:     w.ActiveConns,
		InactiveConns:   w.InactConns,
		PersistentConns: w.PersistConns,
		Stats:           statsFrom64(w.Stats64),
		Stats32:         statsFrom32(w.Stats),
	}
	if w.Stats64 == nil && w.Stats != nil {
		d.Stats = d.Stats32
	}
	return d, nil
}

func (d *Daemon) wire() (*wireDaemon, error) {
	if d.State != DaemonMaster && d.State != DaemonBackup {
		return nil, fmt.Errorf("%w: daemon state %d is neither master nor backup", ErrInvalid, d.State)
	}
	if d.Interface == "" || len(d.Interface) > 15 || strings.IndexByte(d.Interface, 0) >= 0 {
		return nil, fmt.Errorf("%w: daemon interface %q", ErrInvalid, d.Interface)
	}
	w := &wireDaemon{State: uint32(d.State), McastIfn: d.Interface, SyncID: d.SyncID,
		SyncMaxLen: d.MaxLen, McastPort: d.Port, McastTTL: d.TTL}
	g := d.Group.Unmap()
	switch {
	case g.Is4():
		w.McastGroup = g.As4()
	case g.Is6():
		w.McastGroup6 = g.As16()
	}
	return w, nil
}

func daemonFrom(w *wireDaemon) Daemon {
	d := Daemon{State: DaemonState(w.State), Interface: w.McastIfn, SyncID: w.SyncID,
		MaxLen: w.SyncMaxLen, Port: w.McastPort, TTL: w.McastTTL}
	switch {
	case w.McastGroup6 != [16]byte{}:
		d.Group = netip.AddrFrom16(w.McastGroup6)
	case w.McastGroup != [4]byte{}:
		d.Group = netip.AddrFrom4(w.McastGroup)
	}
	return d
}
