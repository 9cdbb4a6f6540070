package desired

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Defaults applied in code (the schema has none on spec fields).
const (
	DefaultScheduler          = v1alpha1.SchedulerWeightedRoundRobin
	DefaultForwarding         = v1alpha1.ForwardingMasquerade
	DefaultTrafficPolicy      = v1alpha1.TrafficPolicyCluster
	DefaultWeight             = 1
	DefaultDrainTimeout       = 60 * time.Second
	DefaultPersistenceTimeout = 10800 * time.Second
)

// KernelScheduler maps readable scheduler names to kernel scheduler modules.
var KernelScheduler = map[v1alpha1.Scheduler]string{
	v1alpha1.SchedulerRoundRobin:                                  "rr",
	v1alpha1.SchedulerWeightedRoundRobin:                          "wrr",
	v1alpha1.SchedulerLeastConnection:                             "lc",
	v1alpha1.SchedulerWeightedLeastConnection:                     "wlc",
	v1alpha1.SchedulerLocalityBasedLeastConnection:                "lblc",
	v1alpha1.SchedulerLocalityBasedLeastConnectionWithReplication: "lblcr",
	v1alpha1.SchedulerDestinationHashing:                          "dh",
	v1alpha1.SchedulerSourceHashing:                               "sh",
	v1alpha1.SchedulerMaglev:                                      "mh",
	v1alpha1.SchedulerWeightedFailover:                            "fo",
	v1alpha1.SchedulerWeightedOverflow:                            "ovf",
	v1alpha1.SchedulerShortestExpectedDelay:                       "sed",
	v1alpha1.SchedulerNeverQueue:                                  "nq",
	v1alpha1.SchedulerTwoRandomChoices:                            "twos",
}

// Cluster holds the objects the computation reads. Objects are not modified.
type Cluster struct {
	VirtualServices []*v1alpha1.VirtualService
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	BackendPools    []*v1alpha1.BackendPool
}

// Node is what the computation needs to know about a node.
type Node struct {
	Name   string
	Labels map[string]string
}

// Verdict is the outcome of one check, ready for a status condition.
type Verdict struct {
	OK      bool
	Reason  string
	Message string
}

// Evaluation is the node-independent verdict on one VirtualService.
type Evaluation struct {
	Key        types.NamespacedName
	Generation int64
	// Accepted: valid and not conflicting. ConflictsWith names the older VirtualService that
	// won, when Reason is Conflicted.
	Accepted      Verdict
	ConflictsWith *types.NamespacedName
	// ResolvedRefs: every backendRef names an existing object and port.
	ResolvedRefs Verdict
	// Backends counts distinct real-server addresses over all ports, cluster-wide.
	Backends  v1alpha1.BackendCounts
	Effective v1alpha1.EffectiveSettings
}

// Model indexes a Cluster once; Evaluate and ForNode then answer from the index.
type Model struct {
	vss       []*vsInfo // sorted by age (oldest first), then namespace/name
	byKey     map[types.NamespacedName]*vsInfo
	services  map[types.NamespacedName]*corev1.Service
	slices    map[types.NamespacedName][]*discoveryv1.EndpointSlice // by namespace/service name
	pools     map[types.NamespacedName]*v1alpha1.BackendPool
	evaluated bool
}

type vsInfo struct {
	vs            *v1alpha1.VirtualService
	key           types.NamespacedName
	eval          Evaluation
	valid         bool
	addrs         []netip.Addr
	selector      labels.Selector
	keys          []string
	ports         []portBackends // one per spec port; one entry for firewall-mark services
	sched         string
	flags         lvs.ServiceFlags
	timeout       time.Duration
	prefix4       int
	prefix6       int
	fwd           lvs.Forwarding
	tunnelType    lvs.TunnelType
	tunnelPort    uint16
	tunnelFlags   lvs.TunnelFlags
	local         bool
	drainTimeout  time.Duration
	conflictsWith *types.NamespacedName
}

type portBackends struct {
	port     uint16
	protocol lvs.Protocol
	cands    []candidate
}

type candidate struct {
	addr        netip.Addr
	port        uint16
	weight      uint32
	ready       bool
	serving     bool
	terminating bool
	disabled    bool
	node        string
	upper       uint32
	lower       uint32
}

// NewModel indexes c. The objects in c must not change while the Model is in use.
func NewModel(c *Cluster) *Model {
	m := &Model{
		byKey:    make(map[types.NamespacedName]*vsInfo, len(c.VirtualServices)),
		services: make(map[types.NamespacedName]*corev1.Service, len(c.Services)),
		slices:   make(map[types.NamespacedName][]*discoveryv1.EndpointSlice, len(c.EndpointSlices)),
		pools:    make(map[types.NamespacedName]*v1alpha1.BackendPool, len(c.BackendPools)),
	}
	for _, s := range c.Services {
		if s != nil {
			m.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
		}
	}
	for _, es := range c.EndpointSlices {
		if es == nil {
			continue
		}
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := types.NamespacedName{Namespace: es.Namespace, Name: svc}
		m.slices[k] = append(m.slices[k], es)
	}
	for _, p := range c.BackendPools {
		if p != nil {
			m.pools[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	for _, vs := range c.VirtualServices {
		if vs == nil {
			continue
		}
		k := types.NamespacedName{Namespace: vs.Namespace, Name: vs.Name}
		if _, dup := m.byKey[k]; dup {
			continue
		}
		vi := &vsInfo{vs: vs, key: k}
		m.byKey[k] = vi
		m.vss = append(m.vss, vi)
	}
	slices.SortFunc(m.vss, func(a, b *vsInfo) int { return olderFirst(a.vs, b.vs) })
	return m
}

// olderFirst orders VirtualServices by creation time, then namespace and name: the conflict
// resolution order.
func olderFirst(a, b *v1alpha1.VirtualService) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

func (m *Model) evaluate() {
	if m.evaluated {
		return
	}
	m.evaluated = true
	claimed := make(map[string]*vsInfo)
	for _, vi := range m.vss {
		vi.parse()
		if !vi.valid {
			continue
		}
		var winner *vsInfo
		for _, k := range vi.keys {
			if w := claimed[k]; w != nil {
				winner = w
				break
			}
		}
		if winner != nil {
			vi.conflictsWith = &winner.key
			vi.eval.Accepted = Verdict{Reason: v1alpha1.ReasonConflicted, Message: fmt.Sprintf(
				"conflicts with the older VirtualService %s on %s", winner.key, sharedKey(vi.keys, winner.keys))}
			vi.eval.ConflictsWith = &winner.key
			continue
		}
		for _, k := range vi.keys {
			claimed[k] = vi
		}
	}
	for _, vi := range m.vss {
		if vi.valid && vi.conflictsWith == nil {
			vi.eval.Accepted = Verdict{OK: true, Reason: v1alpha1.ReasonAccepted, Message: "valid and conflict-free"}
		}
		if vi.valid {
			m.resolve(vi)
		} else {
			vi.eval.ResolvedRefs = Verdict{Reason: v1alpha1.ReasonInvalid, Message: "not checked: the VirtualService is invalid"}
		}
	}
}

func sharedKey(a, b []string) string {
	for _, k := range a {
		if slices.Contains(b, k) {
			return k
		}
	}
	return "?"
}

// Evaluate returns the verdict on the VirtualService key, and false if the Model has no such
// VirtualService.
func (m *Model) Evaluate(key types.NamespacedName) (Evaluation, bool) {
	m.evaluate()
	vi := m.byKey[key]
	if vi == nil {
		return Evaluation{}, false
	}
	return vi.eval, true
}

// Evaluations returns the verdict on every VirtualService, oldest first.
func (m *Model) Evaluations() []Evaluation {
	m.evaluate()
	out := make([]Evaluation, 0, len(m.vss))
	for _, vi := range m.vss {
		out = append(out, vi.eval)
	}
	return out
}

// Selects reports whether the VirtualService key is accepted and its nodeSelector matches
// node.
func (m *Model) Selects(key types.NamespacedName, node Node) bool {
	m.evaluate()
	vi := m.byKey[key]
	return vi != nil && vi.eval.Accepted.OK && vi.selector.Matches(labels.Set(node.Labels))
}

// ForNode computes the IPVS table node should have.
func (m *Model) ForNode(node Node) *Table {
	m.evaluate()
	t := &Table{Node: node.Name}
	nodeLabels := labels.Set(node.Labels)
	for _, vi := range m.vss {
		if !vi.eval.Accepted.OK || !vi.selector.Matches(nodeLabels) {
			continue
		}
		n := len(t.Services)
		t.Services = vi.appendServices(t.Services, node.Name)
		t.VirtualServices = append(t.VirtualServices, Selected{Key: vi.key, Generation: vi.vs.Generation, Services: len(t.Services) - n})
	}
	slices.SortFunc(t.Services, func(a, b Service) int { return compareKeys(a.ServiceKey, b.ServiceKey) })
	slices.SortFunc(t.VirtualServices, func(a, b Selected) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	return t
}

// ForNode computes the IPVS table node should have from c.
func ForNode(c *Cluster, node Node) *Table { return NewModel(c).ForNode(node) }

func compareKeys(a, b lvs.ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.FirewallMark, b.FirewallMark),
		cmp.Compare(a.Family, b.Family),
		a.Address.Compare(b.Address),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Protocol, b.Protocol),
	)
}

// ConflictKeys returns the keys a VirtualService claims: "address/port/protocol" per address
// and port, or "fwmark/<mark>". Two VirtualServices conflict when they share a key. Invalid
// entries yield no key.
func ConflictKeys(vs *v1alpha1.VirtualService) []string {
	var keys []string
	if vs.Spec.FirewallMark != nil {
		return []string{"fwmark/" + strconv.FormatInt(*vs.Spec.FirewallMark, 10)}
	}
	for _, a := range vs.Spec.Addresses {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		for _, p := range vs.Spec.Ports {
			keys = append(keys, addr.String()+"/"+strconv.Itoa(int(p.Port))+"/"+string(p.Protocol))
		}
	}
	return keys
}

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

// corev1Protocol is p as Kubernetes spells it (lvs.Protocol's names are Kubernetes' names).
func corev1Protocol(p lvs.Protocol) corev1.Protocol { return corev1.Protocol(p.String()) }

// parse validates the spec (defence in depth behind the schema) and applies defaults.
func (vi *vsInfo) parse() {
	vs := vi.vs
	spec := &vs.Spec
	vi.eval.Key = vi.key
	vi.eval.Generation = vs.Generation
	invalid := func(format string, args ...any) {
		vi.valid = false
		vi.eval.Accepted = Verdict{Reason: v1alpha1.ReasonInvalid, Message: fmt.Sprintf(format, args...)}
	}
	vi.valid = true

	eff := v1alpha1.EffectiveSettings{
		Scheduler:       cmp.Or(spec.Scheduler, DefaultScheduler),
		Forwarding:      DefaultForwarding,
		TrafficPolicy:   cmp.Or(spec.TrafficPolicy, DefaultTrafficPolicy),
		SessionAffinity: v1alpha1.SessionAffinityNone,
	}
	vi.drainTimeout = DefaultDrainTimeout
	if spec.Drain != nil && spec.Drain.TimeoutSeconds != nil {
		vi.drainTimeout = time.Duration(max(*spec.Drain.TimeoutSeconds, 0)) * time.Second
	}
	eff.DrainTimeoutSeconds = int32(vi.drainTimeout / time.Second)
	if spec.Forwarding != nil && spec.Forwarding.Method != "" {
		eff.Forwarding = spec.Forwarding.Method
	}
	vi.prefix4, vi.prefix6 = 32, 128
	if sa := spec.SessionAffinity; sa != nil && sa.Type == v1alpha1.SessionAffinityClientIP {
		eff.SessionAffinity = v1alpha1.SessionAffinityClientIP
		vi.flags |= lvs.FlagPersistent
		vi.timeout = DefaultPersistenceTimeout
		if c := sa.ClientIP; c != nil {
			if c.TimeoutSeconds != nil && *c.TimeoutSeconds > 0 {
				vi.timeout = time.Duration(*c.TimeoutSeconds) * time.Second
			}
			if c.IPv4PrefixLength != nil && *c.IPv4PrefixLength >= 1 && *c.IPv4PrefixLength <= 32 {
				vi.prefix4 = int(*c.IPv4PrefixLength)
			}
			if c.IPv6PrefixLength != nil && *c.IPv6PrefixLength >= 1 && *c.IPv6PrefixLength <= 128 {
				vi.prefix6 = int(*c.IPv6PrefixLength)
			}
		}
		secs := int32(vi.timeout / time.Second)
		eff.PersistenceTimeoutSeconds = &secs
	}
	vi.eval.Effective = eff

	sched, ok := KernelScheduler[eff.Scheduler]
	if !ok {
		invalid("unknown scheduler %q", eff.Scheduler)
		return
	}
	vi.sched = sched
	for _, f := range spec.SchedulerFlags {
		if eff.Scheduler != v1alpha1.SchedulerSourceHashing && eff.Scheduler != v1alpha1.SchedulerMaglev {
			invalid("schedulerFlags require the SourceHashing or Maglev scheduler")
			return
		}
		switch f {
		case v1alpha1.SchedulerFlagFallback:
			vi.flags |= lvs.FlagSched1
		case v1alpha1.SchedulerFlagPort:
			vi.flags |= lvs.FlagSched2
		default:
			invalid("unknown scheduler flag %q", f)
			return
		}
	}
	if spec.OnePacketScheduling {
		vi.flags |= lvs.FlagOnePacket
	}

	switch eff.Forwarding {
	case v1alpha1.ForwardingMasquerade:
		vi.fwd = lvs.Masquerade
	case v1alpha1.ForwardingDirectRouting:
		vi.fwd = lvs.DirectRouting
	case v1alpha1.ForwardingTunnel:
		vi.fwd = lvs.Tunnel
		t := spec.Forwarding.Tunnel
		if t == nil {
			invalid("tunnel is required when method is Tunnel")
			return
		}
		switch t.Type {
		case v1alpha1.TunnelIPIP:
			vi.tunnelType = lvs.TunnelIPIP
		case v1alpha1.TunnelGUE:
			vi.tunnelType = lvs.TunnelGUE
			if t.Port == nil || *t.Port < 1 || *t.Port > 65535 {
				invalid("port is required for GUE tunnels")
				return
			}
			vi.tunnelPort = uint16(*t.Port)
		case v1alpha1.TunnelGRE:
			vi.tunnelType = lvs.TunnelGRE
		default:
			invalid("unknown tunnel type %q", t.Type)
			return
		}
		switch t.Checksum {
		case v1alpha1.TunnelChecksumOn:
			vi.tunnelFlags = lvs.TunnelChecksum
		case v1alpha1.TunnelChecksumRemote:
			vi.tunnelFlags = lvs.TunnelRemoteChecksum
		}
	default:
		invalid("unknown forwarding method %q", eff.Forwarding)
		return
	}
	vi.local = eff.TrafficPolicy == v1alpha1.TrafficPolicyLocal

	hasAddrs, hasMark := len(spec.Addresses) > 0, spec.FirewallMark != nil
	switch {
	case hasAddrs == hasMark:
		invalid("exactly one of addresses and firewallMark must be set")
		return
	case hasMark && (*spec.FirewallMark < 1 || *spec.FirewallMark > 1<<32-1):
		invalid("firewallMark %d is out of range", *spec.FirewallMark)
		return
	case hasMark:
		vi.ports = []portBackends{{}}
	}
	var fams [2]bool
	for _, a := range spec.Addresses {
		addr, err := netip.ParseAddr(a)
		if err != nil || addr.Zone() != "" || addr.Is4In6() || addr.String() != a {
			invalid("address %q is not a canonical IP address", a)
			return
		}
		f := 0
		if addr.Is6() {
			f = 1
		}
		if fams[f] {
			invalid("addresses must contain at most one address per IP family")
			return
		}
		fams[f] = true
		vi.addrs = append(vi.addrs, addr)
	}
	if hasAddrs && len(spec.Ports) == 0 {
		invalid("ports are required with addresses")
		return
	}
	type pp struct {
		port     uint16
		protocol lvs.Protocol
	}
	seen := make(map[pp]bool, len(spec.Ports))
	for _, p := range spec.Ports {
		proto, ok := protocolOf(p.Protocol)
		if !ok || p.Port < 1 || p.Port > 65535 {
			invalid("port %d/%s is invalid", p.Port, p.Protocol)
			return
		}
		k := pp{uint16(p.Port), proto}
		if seen[k] {
			invalid("port %d/%s is repeated", p.Port, p.Protocol)
			return
		}
		seen[k] = true
		vi.ports = append(vi.ports, portBackends{port: k.port, protocol: k.protocol})
	}
	for i, ref := range spec.BackendRefs {
		if ref.EffectiveKind() == "" {
			invalid("backendRefs[%d]: unknown kind %q (want Service or BackendPool)", i, ref.Kind)
			return
		}
	}
	if spec.NodeSelector == nil {
		vi.selector = labels.Everything()
	} else {
		sel, err := metav1.LabelSelectorAsSelector(spec.NodeSelector)
		if err != nil {
			invalid("nodeSelector is invalid: %v", err)
			return
		}
		vi.selector = sel
	}
	vi.keys = ConflictKeys(vs)
}

// resolve fills the candidates of each port and the ResolvedRefs verdict and backend counts.
func (m *Model) resolve(vi *vsInfo) {
	var problems []string
	reason := v1alpha1.ReasonResolvedRefs
	for i := range vi.ports {
		pb := &vi.ports[i]
		for _, ref := range vi.vs.Spec.BackendRefs {
			refWeight := uint32(DefaultWeight)
			if ref.Weight != nil {
				refWeight = uint32(max(*ref.Weight, 0))
			}
			key := types.NamespacedName{Namespace: vi.key.Namespace, Name: ref.Name}
			switch ref.EffectiveKind() {
			case v1alpha1.BackendKindService:
				svc := m.services[key]
				if svc == nil {
					problems = appendOnce(problems, fmt.Sprintf("Service %s not found", ref.Name))
					reason = v1alpha1.ReasonBackendNotFound
					continue
				}
				svcPort := int32(pb.port)
				if ref.Port != nil {
					svcPort = *ref.Port
				}
				sp := findServicePort(svc, svcPort, pb.protocol)
				if sp == nil {
					what := strconv.Itoa(int(svcPort))
					if pb.protocol != 0 {
						what += "/" + pb.protocol.String()
					}
					problems = appendOnce(problems, fmt.Sprintf("Service %s has no port %s", ref.Name, what))
					if reason == v1alpha1.ReasonResolvedRefs {
						reason = v1alpha1.ReasonPortNotFound
					}
					continue
				}
				pb.cands = m.appendEndpoints(pb.cands, key, sp, refWeight)
			case v1alpha1.BackendKindBackendPool:
				pool := m.pools[key]
				if pool == nil {
					problems = appendOnce(problems, fmt.Sprintf("BackendPool %s not found", ref.Name))
					reason = v1alpha1.ReasonBackendNotFound
					continue
				}
				pb.cands = appendPool(pb.cands, pool, ref, pb.port, refWeight)
			}
			// Any other kind made the VirtualService invalid: resolve never sees one.
		}
	}
	if len(problems) == 0 {
		vi.eval.ResolvedRefs = Verdict{OK: true, Reason: v1alpha1.ReasonResolvedRefs, Message: "all backendRefs resolved"}
	} else {
		vi.eval.ResolvedRefs = Verdict{Reason: reason, Message: strings.Join(problems, "; ")}
	}
	vi.eval.Backends = vi.count()
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func findServicePort(svc *corev1.Service, port int32, proto lvs.Protocol) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if sp.Port != port {
			continue
		}
		if proto == 0 || cmp.Or(sp.Protocol, corev1.ProtocolTCP) == corev1Protocol(proto) {
			return sp
		}
	}
	return nil
}

func (m *Model) appendEndpoints(cands []candidate, svc types.NamespacedName, sp *corev1.ServicePort, weight uint32) []candidate {
	proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
	for _, es := range m.slices[svc] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port := -1
		for _, p := range es.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			pp := corev1.ProtocolTCP
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			if name == sp.Name && pp == proto && p.Port != nil && *p.Port >= 1 && *p.Port <= 65535 {
				port = int(*p.Port)
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			addr, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || addr.Zone() != "" {
				continue
			}
			addr = addr.Unmap()
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			serving := ready
			if ep.Conditions.Serving != nil {
				serving = *ep.Conditions.Serving
			}
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			c := candidate{addr: addr, port: uint16(port), weight: weight, ready: ready && !terminating,
				serving: serving, terminating: terminating}
			if ep.NodeName != nil {
				c.node = *ep.NodeName
			}
			cands = append(cands, c)
		}
	}
	return cands
}

func appendPool(cands []candidate, pool *v1alpha1.BackendPool, ref v1alpha1.BackendRef, vsPort uint16, refWeight uint32) []candidate {
	for _, s := range pool.Spec.Servers {
		addr, err := netip.ParseAddr(s.Address)
		if err != nil || addr.Zone() != "" {
			continue
		}
		port := int32(vsPort)
		switch {
		case s.Port != nil:
			port = *s.Port
		case ref.Port != nil:
			port = *ref.Port
		}
		if port < 0 || port > 65535 {
			continue
		}
		w := uint32(DefaultWeight)
		if s.Weight != nil {
			w = uint32(max(*s.Weight, 0))
		}
		enabled := s.Enabled == nil || *s.Enabled
		c := candidate{addr: addr.Unmap(), port: uint16(port), weight: w * refWeight,
			ready: enabled, serving: enabled, disabled: !enabled}
		if s.UpperThreshold != nil {
			c.upper = uint32(max(*s.UpperThreshold, 0))
		}
		if s.LowerThreshold != nil {
			c.lower = uint32(max(*s.LowerThreshold, 0))
		}
		cands = append(cands, c)
	}
	return cands
}

// count counts distinct addresses over every port: a real server counts as ready if it is
// ready on any port.
func (vi *vsInfo) count() v1alpha1.BackendCounts {
	type state struct{ ready, serving, terminating bool }
	seen := make(map[netip.Addr]state)
	for _, pb := range vi.ports {
		for _, c := range pb.cands {
			s := seen[c.addr]
			s.ready = s.ready || c.ready
			s.serving = s.serving || c.serving
			s.terminating = s.terminating || c.terminating || c.disabled
			seen[c.addr] = s
		}
	}
	var n v1alpha1.BackendCounts
	for _, s := range seen {
		n.Total++
		if s.ready {
			n.Ready++
		}
		if s.serving {
			n.Serving++
		}
		if s.terminating && !s.ready {
			n.Terminating++
		}
	}
	return n
}

func (vi *vsInfo) appendServices(out []Service, node string) []Service {
	base := Service{
		Service: lvs.Service{
			Scheduler:      vi.sched,
			Flags:          vi.flags,
			TimeoutSeconds: uint32(vi.timeout / time.Second),
		},
		Owner:        vi.key,
		Generation:   vi.vs.Generation,
		DrainTimeout: vi.drainTimeout,
	}
	if vi.vs.Spec.FirewallMark != nil {
		mark := uint32(*vi.vs.Spec.FirewallMark)
		pb := &vi.ports[0]
		fams := []lvs.Family{}
		for _, f := range []lvs.Family{lvs.IPv4, lvs.IPv6} {
			if slices.ContainsFunc(pb.cands, func(c candidate) bool { return lvs.FamilyOf(c.addr) == f }) {
				fams = append(fams, f)
			}
		}
		if len(fams) == 0 {
			fams = append(fams, lvs.IPv4)
		}
		for _, f := range fams {
			s := base
			s.ServiceKey = lvs.ServiceKey{Family: f, FirewallMark: mark}
			s.PersistencePrefixLength = vi.prefixFor(f)
			s.Destinations = vi.destinations(pb, f, 0, node)
			out = append(out, s)
		}
		return out
	}
	for _, addr := range vi.addrs {
		f := lvs.FamilyOf(addr)
		for i := range vi.ports {
			pb := &vi.ports[i]
			s := base
			s.ServiceKey = lvs.ServiceKey{Family: f, Protocol: pb.protocol, Address: addr, Port: pb.port}
			s.PersistencePrefixLength = vi.prefixFor(f)
			s.Destinations = vi.destinations(pb, f, pb.port, node)
			out = append(out, s)
		}
	}
	return out
}

func (vi *vsInfo) prefixFor(f lvs.Family) uint8 {
	if vi.flags&lvs.FlagPersistent == 0 {
		return 0
	}
	if f == lvs.IPv4 {
		return uint8(vi.prefix4)
	}
	return uint8(vi.prefix6)
}

// destinations applies the per-service rules (family, traffic policy, ready/fallback/drain,
// dedupe) to the candidates of one port.
func (vi *vsInfo) destinations(pb *portBackends, f lvs.Family, svcPort uint16, node string) []Destination {
	eligible := func(c *candidate) bool {
		if vi.fwd != lvs.Tunnel && lvs.FamilyOf(c.addr) != f {
			return false
		}
		return !vi.local || c.node == node
	}
	anyReady := false
	for i := range pb.cands {
		if c := &pb.cands[i]; c.ready && eligible(c) {
			anyReady = true
			break
		}
	}
	byKey := make(map[lvs.DestinationKey]int, len(pb.cands))
	var out []Destination
	for i := range pb.cands {
		c := &pb.cands[i]
		if !eligible(c) {
			continue
		}
		var active bool
		switch {
		case c.disabled:
			active = false
		case c.ready:
			active = true
		case !anyReady && c.serving && c.terminating:
			active = true
		case c.terminating:
			active = false
		default:
			continue // not ready and not terminating: not a destination
		}
		port := c.port
		if vi.fwd != lvs.Masquerade {
			port = svcPort
		}
		d := Destination{Destination: lvs.Destination{
			Address:        c.addr,
			Port:           port,
			Forwarding:     vi.fwd,
			UpperThreshold: c.upper,
			LowerThreshold: c.lower,
		}}
		if vi.fwd == lvs.Tunnel {
			d.TunnelType, d.TunnelPort, d.TunnelFlags = vi.tunnelType, vi.tunnelPort, vi.tunnelFlags
		}
		if active {
			d.Weight = c.weight
		} else {
			d.Draining = true
			d.DrainTimeout = vi.drainTimeout
		}
		k := lvs.DestinationKey{Address: d.Address, Port: d.Port}
		if j, dup := byKey[k]; dup {
			old := &out[j]
			if old.Draining && !d.Draining || old.Draining == d.Draining && d.Weight > old.Weight {
				*old = d
			}
			continue
		}
		byKey[k] = len(out)
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Destination) int {
		return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
	})
	return out
}
