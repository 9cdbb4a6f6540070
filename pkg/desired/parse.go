package desired

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// vsConfig is a valid VirtualService spec in kernel terms, defaults applied.
type vsConfig struct {
	addrs    []netip.Addr // empty for a firewall-mark service
	mark     uint32       // non-zero for a firewall-mark service
	ports    []portKey    // empty for a firewall-mark service
	selector labels.Selector
	sched    scheduling
	fwd      forwarding
	affinity affinity
	local    bool // trafficPolicy Local
	drain    time.Duration
}

type portKey struct {
	port     uint16
	protocol lvs.Protocol
}

type scheduling struct {
	name  string // kernel module
	flags lvs.ServiceFlags
}

type forwarding struct {
	method      lvs.Forwarding
	tunnelType  lvs.TunnelType
	tunnelPort  uint16
	tunnelFlags lvs.TunnelFlags
}

type affinity struct {
	persistent     bool
	timeoutSeconds uint32
	prefix4        uint8
	prefix6        uint8
}

// prefixFor is the persistence prefix length of a service of family f: 0 (unused) without
// persistence.
func (a affinity) prefixFor(f lvs.Family) uint8 {
	switch {
	case !a.persistent:
		return 0
	case f == lvs.IPv4:
		return a.prefix4
	}
	return a.prefix6
}

// effectiveSettings applies the defaults to spec: the one place they are applied. It never
// fails, so that status shows the settings in force even for a spec the parsers refuse.
func effectiveSettings(spec *v1alpha1.VirtualServiceSpec) v1alpha1.EffectiveSettings {
	eff := v1alpha1.EffectiveSettings{
		Scheduler:           cmp.Or(spec.Scheduler, DefaultScheduler),
		Forwarding:          DefaultForwarding,
		TrafficPolicy:       cmp.Or(spec.TrafficPolicy, DefaultTrafficPolicy),
		SessionAffinity:     v1alpha1.SessionAffinityNone,
		DrainTimeoutSeconds: int32(DefaultDrainTimeout / time.Second),
		Weighting:           cmp.Or(spec.Weighting, v1alpha1.WeightingStatic),
	}
	if spec.Forwarding != nil && spec.Forwarding.Method != "" {
		eff.Forwarding = spec.Forwarding.Method
	}
	if spec.Drain != nil && spec.Drain.TimeoutSeconds != nil {
		eff.DrainTimeoutSeconds = max(*spec.Drain.TimeoutSeconds, 0)
	}
	if sa := spec.SessionAffinity; sa != nil && sa.Type != "" {
		eff.SessionAffinity = sa.Type
	}
	if eff.SessionAffinity == v1alpha1.SessionAffinityClientIP {
		secs := int32(DefaultPersistenceTimeout / time.Second)
		if c := spec.SessionAffinity.ClientIP; c != nil && c.TimeoutSeconds != nil && *c.TimeoutSeconds > 0 {
			secs = *c.TimeoutSeconds
		}
		eff.PersistenceTimeoutSeconds = &secs
	}
	return eff
}

// parseSpec validates spec and maps it to kernel terms, with the defaults of eff. Its error is
// the reason the VirtualService is not accepted.
func parseSpec(spec *v1alpha1.VirtualServiceSpec, eff *v1alpha1.EffectiveSettings) (vsConfig, error) {
	c := vsConfig{drain: time.Duration(eff.DrainTimeoutSeconds) * time.Second}
	var err error
	if c.addrs, c.mark, c.ports, err = parseTarget(spec); err != nil {
		return vsConfig{}, err
	}
	if c.sched, err = parseScheduling(eff.Scheduler, spec.SchedulerFlags, spec.OnePacketScheduling, c.ports); err != nil {
		return vsConfig{}, err
	}
	if c.fwd, err = parseForwarding(eff.Forwarding, spec.Forwarding); err != nil {
		return vsConfig{}, err
	}
	if c.affinity, err = parseAffinity(eff.SessionAffinity, spec.SessionAffinity); err != nil {
		return vsConfig{}, err
	}
	if c.local, err = parseTrafficPolicy(eff.TrafficPolicy); err != nil {
		return vsConfig{}, err
	}
	if err = parseDrain(spec.Drain); err != nil {
		return vsConfig{}, err
	}
	if err = parseBackendRefs(spec.BackendRefs); err != nil {
		return vsConfig{}, err
	}
	if c.selector, err = parseSelector(spec.NodeSelector); err != nil {
		return vsConfig{}, err
	}
	return c, nil
}

// parseTarget reads what clients reach: addresses and ports, or a firewall mark.
func parseTarget(spec *v1alpha1.VirtualServiceSpec) (addrs []netip.Addr, mark uint32, ports []portKey, err error) {
	hasAddrs, hasMark := len(spec.Addresses) > 0, spec.FirewallMark != nil
	switch {
	case hasAddrs == hasMark:
		return nil, 0, nil, errors.New("exactly one of addresses and firewallMark must be set")
	case hasMark && len(spec.Ports) > 0:
		return nil, 0, nil, errors.New("ports must not be set with firewallMark")
	case hasMark:
		mark, err = parseFirewallMark(*spec.FirewallMark)
		return nil, mark, nil, err
	case len(spec.Ports) == 0:
		return nil, 0, nil, errors.New("ports are required with addresses")
	}
	if addrs, err = parseAddresses(spec.Addresses); err != nil {
		return nil, 0, nil, err
	}
	if ports, err = parsePorts(spec.Ports); err != nil {
		return nil, 0, nil, err
	}
	return addrs, 0, ports, nil
}

func parseFirewallMark(m int64) (uint32, error) {
	if m < 1 || m > 1<<32-1 {
		return 0, fmt.Errorf("firewallMark %d is out of range", m)
	}
	return uint32(m), nil
}

// parseAddresses reads the virtual addresses: canonical, at most one per family, and of a kind
// a node can receive traffic for.
func parseAddresses(in []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(in))
	var seen [2]bool
	var buf [64]byte // canonical text without allocating (this runs for every VirtualService)
	for _, s := range in {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4In6() || string(a.AppendTo(buf[:0])) != s {
			return nil, fmt.Errorf("address %q is not a canonical IP address", s)
		}
		if err := checkUsable(a); err != nil {
			return nil, fmt.Errorf("address %q %w", s, err)
		}
		f := 0
		if a.Is6() {
			f = 1
		}
		if seen[f] {
			return nil, errors.New("addresses must contain at most one address per IP family")
		}
		seen[f] = true
		out = append(out, a)
	}
	return out, nil
}

// checkUsable refuses the addresses that can be neither a virtual address nor a real server:
// the classes the schema's CEL rules refuse (api/v1alpha1), in the same terms. Unspecified,
// multicast and broadcast addresses name no single host; a loopback address names a
// different host on every node; link-local addresses are not routed and are ambiguous
// without an interface (which the API cannot name).
func checkUsable(a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return errors.New("must not be the unspecified address")
	case a.IsLoopback():
		return errors.New("must not be a loopback address")
	case a.IsLinkLocalUnicast():
		return errors.New("must not be a link-local address")
	case !a.IsGlobalUnicast():
		// What remains: multicast (link-local multicast included) and 255.255.255.255.
		return errors.New("must not be a multicast or broadcast address")
	}
	return nil
}

func parsePorts(in []v1alpha1.VirtualServicePort) ([]portKey, error) {
	out := make([]portKey, 0, len(in))
	for _, p := range in {
		proto, ok := protocolOf(p.Protocol)
		if !ok || p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("port %d/%s is invalid", p.Port, p.Protocol)
		}
		k := portKey{uint16(p.Port), proto}
		for _, o := range out {
			if o == k {
				return nil, fmt.Errorf("port %d/%s is repeated", p.Port, p.Protocol)
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// protocolOf maps the API's protocol names exactly (the schema's enum is upper case, and the
// conflict keys use the spelling as given, so "tcp" must not pass as TCP).
func protocolOf(p v1alpha1.Protocol) (lvs.Protocol, bool) {
	switch p {
	case v1alpha1.ProtocolTCP:
		return lvs.TCP, true
	case v1alpha1.ProtocolUDP:
		return lvs.UDP, true
	case v1alpha1.ProtocolSCTP:
		return lvs.SCTP, true
	}
	return 0, false
}

func parseScheduling(name v1alpha1.Scheduler, flags []v1alpha1.SchedulerFlag, onePacket bool, ports []portKey) (scheduling, error) {
	var s scheduling
	var ok bool
	if s.name, ok = KernelScheduler[name]; !ok {
		return s, fmt.Errorf("unknown scheduler %q", name)
	}
	if len(flags) > 0 && name != v1alpha1.SchedulerSourceHashing && name != v1alpha1.SchedulerMaglev {
		return s, errors.New("schedulerFlags require the SourceHashing or Maglev scheduler")
	}
	for _, f := range flags {
		switch f {
		case v1alpha1.SchedulerFlagFallback:
			s.flags |= lvs.FlagSched1
		case v1alpha1.SchedulerFlagPort:
			s.flags |= lvs.FlagSched2
		default:
			return s, fmt.Errorf("unknown scheduler flag %q", f)
		}
	}
	if onePacket {
		for _, p := range ports {
			if p.protocol != lvs.UDP {
				return s, errors.New("onePacketScheduling requires every port to be UDP")
			}
		}
		s.flags |= lvs.FlagOnePacket
	}
	return s, nil
}

func parseForwarding(method v1alpha1.ForwardingMethod, spec *v1alpha1.Forwarding) (forwarding, error) {
	var tunnel *v1alpha1.Tunnel
	if spec != nil {
		tunnel = spec.Tunnel
	}
	switch method {
	case v1alpha1.ForwardingMasquerade, v1alpha1.ForwardingDirectRouting:
		if tunnel != nil {
			return forwarding{}, errors.New("tunnel is only valid when method is Tunnel")
		}
		if method == v1alpha1.ForwardingDirectRouting {
			return forwarding{method: lvs.DirectRouting}, nil
		}
		return forwarding{method: lvs.Masquerade}, nil
	case v1alpha1.ForwardingTunnel:
		if tunnel == nil {
			return forwarding{}, errors.New("tunnel is required when method is Tunnel")
		}
		return parseTunnel(tunnel)
	}
	return forwarding{}, fmt.Errorf("unknown forwarding method %q", method)
}

func parseTunnel(t *v1alpha1.Tunnel) (forwarding, error) {
	f := forwarding{method: lvs.Tunnel}
	switch t.Type {
	case v1alpha1.TunnelIPIP:
		f.tunnelType = lvs.TunnelIPIP
	case v1alpha1.TunnelGUE:
		f.tunnelType = lvs.TunnelGUE
	case v1alpha1.TunnelGRE:
		f.tunnelType = lvs.TunnelGRE
	default:
		return f, fmt.Errorf("unknown tunnel type %q", t.Type)
	}
	switch {
	case t.Type == v1alpha1.TunnelGUE && t.Port == nil:
		return f, errors.New("port is required for GUE tunnels")
	case t.Type != v1alpha1.TunnelGUE && t.Port != nil:
		return f, errors.New("port is only valid for GUE tunnels")
	case t.Port != nil && (*t.Port < 1 || *t.Port > 65535):
		return f, fmt.Errorf("tunnel port %d is out of range", *t.Port)
	case t.Port != nil:
		f.tunnelPort = uint16(*t.Port)
	}
	switch t.Checksum {
	case "", v1alpha1.TunnelChecksumNone:
	case v1alpha1.TunnelChecksumOn:
		f.tunnelFlags = lvs.TunnelChecksum
	case v1alpha1.TunnelChecksumRemote:
		f.tunnelFlags = lvs.TunnelRemoteChecksum
	default:
		return f, fmt.Errorf("unknown tunnel checksum %q", t.Checksum)
	}
	if f.tunnelFlags != 0 && t.Type == v1alpha1.TunnelIPIP {
		return f, errors.New("checksum is only valid for GUE and GRE tunnels")
	}
	return f, nil
}

func parseAffinity(typ v1alpha1.SessionAffinityType, spec *v1alpha1.SessionAffinity) (affinity, error) {
	a := affinity{prefix4: 32, prefix6: 128}
	switch typ {
	case v1alpha1.SessionAffinityNone:
		if spec != nil && spec.ClientIP != nil {
			return a, errors.New("clientIP is only valid when type is ClientIP")
		}
		return a, nil
	case v1alpha1.SessionAffinityClientIP:
	default:
		return a, fmt.Errorf("unknown session affinity %q", typ)
	}
	a.persistent = true
	a.timeoutSeconds = uint32(DefaultPersistenceTimeout / time.Second)
	c := spec.ClientIP
	if c == nil {
		return a, nil
	}
	var err error
	if c.TimeoutSeconds != nil {
		if a.timeoutSeconds, err = inRange[uint32]("sessionAffinity.clientIP.timeoutSeconds", *c.TimeoutSeconds, 1, 86400); err != nil {
			return a, err
		}
	}
	if c.IPv4PrefixLength != nil {
		if a.prefix4, err = inRange[uint8]("sessionAffinity.clientIP.ipv4PrefixLength", *c.IPv4PrefixLength, 1, 32); err != nil {
			return a, err
		}
	}
	if c.IPv6PrefixLength != nil {
		if a.prefix6, err = inRange[uint8]("sessionAffinity.clientIP.ipv6PrefixLength", *c.IPv6PrefixLength, 1, 128); err != nil {
			return a, err
		}
	}
	return a, nil
}

// inRange returns v as a T when lo <= v <= hi (the schema's bounds, which fit T).
func inRange[T uint8 | uint32](field string, v, lo, hi int32) (T, error) {
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s %d is out of range [%d, %d]", field, v, lo, hi)
	}
	return T(v), nil
}

func parseTrafficPolicy(p v1alpha1.TrafficPolicy) (local bool, err error) {
	switch p {
	case v1alpha1.TrafficPolicyCluster:
		return false, nil
	case v1alpha1.TrafficPolicyLocal:
		return true, nil
	}
	return false, fmt.Errorf("unknown traffic policy %q", p)
}

func parseDrain(d *v1alpha1.Drain) error {
	if d == nil || d.TimeoutSeconds == nil {
		return nil
	}
	_, err := inRange[uint32]("drain.timeoutSeconds", *d.TimeoutSeconds, 0, 86400)
	return err
}

func parseBackendRefs(refs []v1alpha1.BackendRef) error {
	for i, ref := range refs {
		if ref.EffectiveKind() == "" {
			return fmt.Errorf("backendRefs[%d]: unknown kind %q (want Service or BackendPool)", i, ref.Kind)
		}
	}
	return nil
}

// parseSelector reads the nodeSelector: every node when unset.
func parseSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("nodeSelector is invalid: %w", err)
	}
	return sel, nil
}
