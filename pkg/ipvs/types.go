package ipvs

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kubelvs/kubelvs/pkg/lvs"
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

// Service is a virtual service as the kernel reports it: its configuration and its counters.
type Service struct {
	lvs.Service

	// Stats are the 64-bit counters (IPVS_SVC_ATTR_STATS64; the 32-bit ones on kernels before
	// 4.1, which have no others), Stats32 the 32-bit ones (IPVS_SVC_ATTR_STATS), which wrap.
	Stats   Stats `json:"stats"`
	Stats32 Stats `json:"stats32"`
}

// Destination is a real server of a service as the kernel reports it: its configuration, its
// connection counts and its counters.
type Destination struct {
	lvs.Destination

	ActiveConns     uint32 `json:"activeConns"`
	InactiveConns   uint32 `json:"inactiveConns"`
	PersistentConns uint32 `json:"persistentConns"`
	// Stats and Stats32 are as in [Service].
	Stats   Stats `json:"stats"`
	Stats32 Stats `json:"stats32"`
}

// TableEntry is one service of the table with its destinations.
type TableEntry struct {
	Service
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

func addrFrom(f lvs.Family, b [16]byte) netip.Addr {
	switch f {
	case lvs.IPv4:
		return netip.AddrFrom4([4]byte(b[:4]))
	case lvs.IPv6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// checkAddr verifies that an address is valid and of the family.
func checkAddr(what string, f lvs.Family, a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() {
		return fmt.Errorf("%w: %s address is missing", ErrInvalid, what)
	}
	if f != lvs.IPv4 && f != lvs.IPv6 {
		return fmt.Errorf("%w: %s family %d is neither IPv4 nor IPv6", ErrInvalid, what, f)
	}
	if lvs.FamilyOf(a) != f {
		return fmt.Errorf("%w: %s address %s is not %s", ErrInvalid, what, a, f)
	}
	if a.Zone() != "" {
		return fmt.Errorf("%w: %s address %s has a zone", ErrInvalid, what, a)
	}
	return nil
}

// wireKey encodes a service's identity (canonicalized first).
func wireKey(key lvs.ServiceKey) (*wireServiceKey, error) {
	k := key.Canonical()
	w := &wireServiceKey{AF: uint16(k.Family), FWMark: k.FirewallMark}
	if k.FirewallMark != 0 {
		if k.Family != lvs.IPv4 && k.Family != lvs.IPv6 {
			return nil, fmt.Errorf("%w: service family %d is neither IPv4 nor IPv6", ErrInvalid, k.Family)
		}
		return w, nil
	}
	if err := checkAddr("service", k.Family, k.Address); err != nil {
		return nil, err
	}
	switch k.Protocol {
	case lvs.TCP, lvs.UDP, lvs.SCTP:
	default:
		return nil, fmt.Errorf("%w: service protocol %d is not TCP, UDP or SCTP", ErrInvalid, k.Protocol)
	}
	w.Protocol, w.Addr, w.Port = uint16(k.Protocol), addrBytes(k.Address), k.Port
	return w, nil
}

// maxNameLen is IP_VS_SCHEDNAME_MAXLEN and IP_VS_PENAME_MAXLEN less the NUL.
const maxNameLen = 15

func checkName(what, name string) error {
	if len(name) > maxNameLen || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: %s name %q", ErrInvalid, what, name)
	}
	return nil
}

// wireSvc encodes a service's full configuration, for NEW_SERVICE and SET_SERVICE.
func wireSvc(s *lvs.Service) (*wireService, error) {
	k, err := wireKey(s.ServiceKey)
	if err != nil {
		return nil, err
	}
	sched := s.Scheduler
	if sched == "" {
		sched = "wlc"
	}
	if err := checkName("scheduler", sched); err != nil {
		return nil, err
	}
	if err := checkName("persistence engine", s.PersistenceEngine); err != nil {
		return nil, err
	}
	if bad := s.Flags &^ (lvs.UserFlags | lvs.FlagHashed); bad != 0 {
		return nil, fmt.Errorf("%w: unknown service flags %s", ErrInvalid, bad)
	}
	f := lvs.Family(k.AF)
	n := s.PersistencePrefixLength
	if n == 0 {
		n = uint8(f.Bits())
	}
	if int(n) > f.Bits() {
		return nil, fmt.Errorf("%w: persistence netmask /%d is longer than %s addresses", ErrInvalid, n, f)
	}
	w := &wireService{
		AF: k.AF, Protocol: k.Protocol, Addr: k.Addr, Port: k.Port, FWMark: k.FWMark,
		SchedName: sched,
		Timeout:   s.TimeoutSeconds,
		PEName:    s.PersistenceEngine,
	}
	// Every flag is set as given (mask all ones) except "hashed", which the kernel sets itself
	// and which would keep a service that claims it out of the kernel's hash table.
	binary.NativeEndian.PutUint32(w.Flags[:4], uint32(s.Flags&lvs.UserFlags))
	binary.NativeEndian.PutUint32(w.Flags[4:], ^uint32(0))
	if f == lvs.IPv6 {
		binary.NativeEndian.PutUint32(w.Netmask[:], uint32(n))
	} else {
		binary.BigEndian.PutUint32(w.Netmask[:], ^uint32(0)<<(32-uint32(n)))
	}
	return w, nil
}

// destFamily is the family of a destination: its own, else its address's, else its service's.
func destFamily(d *lvs.Destination, svc lvs.Family) lvs.Family {
	if d.Family != 0 {
		return d.Family
	}
	if f := lvs.FamilyOf(d.Address); f != 0 {
		return f
	}
	return svc
}

func destWireKey(d *lvs.Destination, svc lvs.Family) (wireDestKey, error) {
	f := destFamily(d, svc)
	if err := checkAddr("destination", f, d.Address); err != nil {
		return wireDestKey{}, err
	}
	return wireDestKey{Addr: addrBytes(d.Address), Port: d.Port, AddrFamily: uint16(f)}, nil
}

// maxWeight is the largest weight the kernel takes (it stores an int).
const maxWeight = 1<<31 - 1

func destWire(d *lvs.Destination, svc lvs.Family) (wireDestReq, error) {
	k, err := destWireKey(d, svc)
	if err != nil {
		return wireDestReq{}, err
	}
	switch {
	case d.Forwarding > lvs.Bypass:
		return wireDestReq{}, fmt.Errorf("%w: forwarding method %d", ErrInvalid, d.Forwarding)
	case d.Weight > maxWeight:
		return wireDestReq{}, fmt.Errorf("%w: weight %d is above %d", ErrInvalid, d.Weight, maxWeight)
	case d.TunnelType > lvs.TunnelGRE:
		return wireDestReq{}, fmt.Errorf("%w: tunnel type %d", ErrInvalid, d.TunnelType)
	case lvs.Family(k.AddrFamily) != svc && d.Forwarding != lvs.Tunnel:
		return wireDestReq{}, fmt.Errorf("%w: destination %s is %s in an %s service: only tunnelled destinations may differ",
			ErrInvalid, d.Address, lvs.Family(k.AddrFamily), svc)
	}
	return wireDestReq{
		Addr: k.Addr, Port: k.Port, AddrFamily: k.AddrFamily,
		FwdMethod: uint32(d.Forwarding), Weight: int32(d.Weight),
		UThresh: d.UpperThreshold, LThresh: d.LowerThreshold,
		TunType: uint8(d.TunnelType), TunPort: d.TunnelPort, TunFlags: uint16(d.TunnelFlags),
	}, nil
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
