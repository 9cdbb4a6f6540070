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
	// DelayLevels are the delay-aware weight levels of backend pods (see [WeightFunc]), as the
	// pods' node agents publish them in the kubelvs.io/TaskDelays condition; a pod without one
	// is at level 0. Only VirtualServices with weighting DelayAware use them.
	DelayLevels map[types.NamespacedName]int
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

// Model indexes a Cluster and evaluates every VirtualService once, in NewModel; Evaluate,
// Selects and ForNode then answer from it. A Model is never modified after NewModel returns,
// so it is safe for concurrent use.
type Model struct {
	vss      []*vsInfo // sorted by age (oldest first), then namespace/name
	byKey    map[types.NamespacedName]*vsInfo
	levels   map[types.NamespacedName]int // Cluster.DelayLevels
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice // by namespace/service name
	pools    map[types.NamespacedName]*v1alpha1.BackendPool
}

// vsInfo is one VirtualService as the Model sees it. Its verdicts live in eval only.
type vsInfo struct {
	vs    *v1alpha1.VirtualService
	key   types.NamespacedName
	eval  Evaluation
	valid bool           // the spec parsed
	cfg   vsConfig       // the parsed spec, when valid
	keys  []string       // conflict keys
	ports []portBackends // one per spec port; one entry for firewall-mark services
}

// accepted reports whether vi is valid and won every conflict.
func (vi *vsInfo) accepted() bool { return vi.eval.Accepted.OK }

type portBackends struct {
	portKey
	cands []candidate
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
	pod         types.NamespacedName // the endpoint's targetRef, when a Pod
}

// NewModel indexes and evaluates c. The objects in c must not change while the Model is in
// use.
func NewModel(c *Cluster) *Model {
	m := &Model{
		levels:   c.DelayLevels,
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
		if es == nil || es.Labels[discoveryv1.LabelServiceName] == "" {
			continue
		}
		k := types.NamespacedName{Namespace: es.Namespace, Name: es.Labels[discoveryv1.LabelServiceName]}
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
	m.evaluate()
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

// evaluate parses every VirtualService, settles conflicts oldest first, and resolves the
// backends of the accepted ones.
func (m *Model) evaluate() {
	claimed := make(map[string]*vsInfo)
	for _, vi := range m.vss {
		vi.parse()
		if !vi.valid {
			continue
		}
		if winner := firstClaimant(claimed, vi.keys); winner != nil {
			vi.eval.ConflictsWith = &winner.key
			vi.eval.Accepted = Verdict{Reason: v1alpha1.ReasonConflicted, Message: fmt.Sprintf(
				"conflicts with the older VirtualService %s on %s", winner.key, sharedKey(vi.keys, winner.keys))}
			continue
		}
		for _, k := range vi.keys {
			claimed[k] = vi
		}
		vi.eval.Accepted = Verdict{OK: true, Reason: v1alpha1.ReasonAccepted, Message: "valid and conflict-free"}
	}
	for _, vi := range m.vss {
		if vi.valid {
			m.resolve(vi)
		} else {
			vi.eval.ResolvedRefs = Verdict{Reason: v1alpha1.ReasonInvalid, Message: "not checked: the VirtualService is invalid"}
		}
	}
}

func firstClaimant(claimed map[string]*vsInfo, keys []string) *vsInfo {
	for _, k := range keys {
		if w := claimed[k]; w != nil {
			return w
		}
	}
	return nil
}

func sharedKey(a, b []string) string {
	for _, k := range a {
		if slices.Contains(b, k) {
			return k
		}
	}
	return "?"
}

// parse applies the defaults (the effective settings, shown even for an invalid spec) and
// then validates the spec; an invalid one gets its reason in the Accepted verdict.
func (vi *vsInfo) parse() {
	vi.eval.Key = vi.key
	vi.eval.Generation = vi.vs.Generation
	vi.eval.Effective = effectiveSettings(&vi.vs.Spec)
	cfg, err := parseSpec(&vi.vs.Spec, &vi.eval.Effective)
	if err != nil {
		vi.eval.Accepted = Verdict{Reason: v1alpha1.ReasonInvalid, Message: err.Error()}
		return
	}
	vi.cfg, vi.valid = cfg, true
	vi.keys = ConflictKeys(vi.vs)
	if cfg.mark != 0 {
		vi.ports = []portBackends{{}}
		return
	}
	vi.ports = make([]portBackends, len(cfg.ports))
	for i, p := range cfg.ports {
		vi.ports[i].portKey = p
	}
}

// Evaluate returns the verdict on the VirtualService key, and false if the Model has no such
// VirtualService.
func (m *Model) Evaluate(key types.NamespacedName) (Evaluation, bool) {
	vi := m.byKey[key]
	if vi == nil {
		return Evaluation{}, false
	}
	return vi.eval, true
}

// Evaluations returns the verdict on every VirtualService, oldest first.
func (m *Model) Evaluations() []Evaluation {
	out := make([]Evaluation, 0, len(m.vss))
	for _, vi := range m.vss {
		out = append(out, vi.eval)
	}
	return out
}

// Selects reports whether the VirtualService key is accepted and its nodeSelector matches
// node.
func (m *Model) Selects(key types.NamespacedName, node Node) bool {
	vi := m.byKey[key]
	return vi != nil && vi.accepted() && vi.cfg.selector.Matches(labels.Set(node.Labels))
}

// ForNode computes the IPVS table node should have.
func (m *Model) ForNode(node Node) *Table {
	t := &Table{Node: node.Name}
	nodeLabels := labels.Set(node.Labels)
	for _, vi := range m.vss {
		if !vi.accepted() || !vi.cfg.selector.Matches(nodeLabels) {
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
	var buf [64]byte // the canonical address, formatted once without an allocation of its own
	for _, a := range vs.Spec.Addresses {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		text := addr.AppendTo(buf[:0])
		for _, p := range vs.Spec.Ports {
			keys = append(keys, string(text)+"/"+strconv.Itoa(int(p.Port))+"/"+string(p.Protocol))
		}
	}
	return keys
}

// corev1Protocol is p as Kubernetes spells it (lvs.Protocol's names are Kubernetes' names).
func corev1Protocol(p lvs.Protocol) corev1.Protocol { return corev1.Protocol(p.String()) }

// refProblems collects what keeps backendRefs from resolving, and the reason of the first
// (a missing object outranks a missing port).
type refProblems struct {
	reason   string
	messages []string
}

func (p *refProblems) add(reason, msg string) {
	if p.reason == "" || p.reason == v1alpha1.ReasonPortNotFound {
		p.reason = reason
	}
	if !slices.Contains(p.messages, msg) {
		p.messages = append(p.messages, msg)
	}
}

// resolve fills the candidates of each port and the ResolvedRefs verdict and backend counts.
func (m *Model) resolve(vi *vsInfo) {
	var problems refProblems
	for i := range vi.ports {
		pb := &vi.ports[i]
		for _, ref := range vi.vs.Spec.BackendRefs {
			refWeight := uint32(DefaultWeight)
			if ref.Weight != nil {
				refWeight = uint32(max(*ref.Weight, 0))
			}
			key := types.NamespacedName{Namespace: vi.key.Namespace, Name: ref.Name}
			// parse refused every other kind.
			if ref.EffectiveKind() == v1alpha1.BackendKindBackendPool {
				m.resolvePool(pb, key, ref, refWeight, &problems)
			} else {
				m.resolveService(pb, key, ref, refWeight, &problems)
			}
		}
		if vi.vs.Spec.Weighting == v1alpha1.WeightingDelayAware {
			m.delayAware(pb.cands)
		}
	}
	if len(problems.messages) == 0 {
		vi.eval.ResolvedRefs = Verdict{OK: true, Reason: v1alpha1.ReasonResolvedRefs, Message: "all backendRefs resolved"}
	} else {
		vi.eval.ResolvedRefs = Verdict{Reason: problems.reason, Message: strings.Join(problems.messages, "; ")}
	}
	vi.eval.Backends = vi.count()
}

// delayAware scales the candidates' weights by their pods' delay levels (DefaultWeightFunc).
// Readiness is left to the candidates' own flags: a weight only falls to 0 when the static
// weight is 0.
func (m *Model) delayAware(cands []candidate) {
	for i := range cands {
		c := &cands[i]
		c.weight = DefaultWeightFunc.Weight(c.weight, m.levels[c.pod], true)
	}
}

func (m *Model) resolveService(pb *portBackends, key types.NamespacedName, ref v1alpha1.BackendRef, weight uint32, problems *refProblems) {
	svc := m.services[key]
	if svc == nil {
		problems.add(v1alpha1.ReasonBackendNotFound, fmt.Sprintf("Service %s not found", ref.Name))
		return
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
		problems.add(v1alpha1.ReasonPortNotFound, fmt.Sprintf("Service %s has no port %s", ref.Name, what))
		return
	}
	pb.cands = m.appendEndpoints(pb.cands, key, sp, weight)
}

func (m *Model) resolvePool(pb *portBackends, key types.NamespacedName, ref v1alpha1.BackendRef, weight uint32, problems *refProblems) {
	pool := m.pools[key]
	if pool == nil {
		problems.add(v1alpha1.ReasonBackendNotFound, fmt.Sprintf("BackendPool %s not found", ref.Name))
		return
	}
	var bad []string
	pb.cands, bad = appendPool(pb.cands, pool, ref, pb.port, weight)
	for _, msg := range bad {
		problems.add(v1alpha1.ReasonInvalidBackend, fmt.Sprintf("BackendPool %s: %s", ref.Name, msg))
	}
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
	for _, es := range m.slices[svc] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := targetPort(es, sp)
		if !ok {
			continue
		}
		for i := range es.Endpoints {
			if c, ok := endpointCandidate(&es.Endpoints[i], port, weight); ok {
				if c.pod.Name != "" && c.pod.Namespace == "" {
					c.pod.Namespace = es.Namespace
				}
				cands = append(cands, c)
			}
		}
	}
	return cands
}

// targetPort is the port of es that backs the Service port sp (same name and protocol).
func targetPort(es *discoveryv1.EndpointSlice, sp *corev1.ServicePort) (uint16, bool) {
	proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
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
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

func endpointCandidate(ep *discoveryv1.Endpoint, port uint16, weight uint32) (candidate, bool) {
	if len(ep.Addresses) == 0 {
		return candidate{}, false
	}
	addr, err := netip.ParseAddr(ep.Addresses[0])
	if err != nil || addr.Zone() != "" {
		return candidate{}, false
	}
	ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
	serving := ready
	if ep.Conditions.Serving != nil {
		serving = *ep.Conditions.Serving
	}
	terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
	c := candidate{addr: addr.Unmap(), port: port, weight: weight, ready: ready && !terminating,
		serving: serving, terminating: terminating}
	if ep.NodeName != nil {
		c.node = *ep.NodeName
	}
	if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
		c.pod = types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	}
	return c, true
}

// appendPool appends the usable servers of pool, and says why the others are left out (the
// schema refuses them; a pool that bypassed it must not program them).
func appendPool(cands []candidate, pool *v1alpha1.BackendPool, ref v1alpha1.BackendRef, vsPort uint16, refWeight uint32) ([]candidate, []string) {
	var bad []string
	for _, s := range pool.Spec.Servers {
		addr, err := netip.ParseAddr(s.Address)
		if err != nil || addr.Zone() != "" {
			bad = append(bad, fmt.Sprintf("server %q is not an IP address", s.Address))
			continue
		}
		if err := checkUsable(addr.Unmap()); err != nil {
			bad = append(bad, fmt.Sprintf("server %s %v", s.Address, err))
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
			bad = append(bad, fmt.Sprintf("server %s: port %d is out of range", s.Address, port))
			continue
		}
		cands = append(cands, poolCandidate(&s, addr.Unmap(), uint16(port), refWeight))
	}
	return cands, bad
}

func poolCandidate(s *v1alpha1.RealServer, addr netip.Addr, port uint16, refWeight uint32) candidate {
	w := uint32(DefaultWeight)
	if s.Weight != nil {
		w = uint32(max(*s.Weight, 0))
	}
	enabled := s.Enabled == nil || *s.Enabled
	c := candidate{addr: addr, port: port, weight: w * refWeight, ready: enabled, serving: enabled, disabled: !enabled}
	if s.UpperThreshold != nil {
		c.upper = uint32(max(*s.UpperThreshold, 0))
	}
	if s.LowerThreshold != nil {
		c.lower = uint32(max(*s.LowerThreshold, 0))
	}
	return c
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
	cfg := &vi.cfg
	base := Service{
		Service: lvs.Service{
			Scheduler:      cfg.sched.name,
			Flags:          cfg.sched.flags,
			TimeoutSeconds: cfg.affinity.timeoutSeconds,
		},
		Owner:        vi.key,
		Generation:   vi.vs.Generation,
		DrainTimeout: vi.cfg.drain,
	}
	if cfg.affinity.persistent {
		base.Flags |= lvs.FlagPersistent
	} else {
		base.TimeoutSeconds = 0
	}
	if cfg.mark != 0 {
		pb := &vi.ports[0]
		for _, f := range markFamilies(pb.cands) {
			s := base
			s.ServiceKey = lvs.ServiceKey{Family: f, FirewallMark: cfg.mark}
			s.PersistencePrefixLength = cfg.affinity.prefixFor(f)
			s.Destinations = vi.destinations(pb, f, 0, node)
			out = append(out, s)
		}
		return out
	}
	for _, addr := range cfg.addrs {
		f := lvs.FamilyOf(addr)
		for i := range vi.ports {
			pb := &vi.ports[i]
			s := base
			s.ServiceKey = lvs.ServiceKey{Family: f, Protocol: pb.protocol, Address: addr, Port: pb.port}
			s.PersistencePrefixLength = cfg.affinity.prefixFor(f)
			s.Destinations = vi.destinations(pb, f, pb.port, node)
			out = append(out, s)
		}
	}
	return out
}

// markFamilies are the families of a firewall-mark VirtualService's IPVS services: each family
// its backends have (a firewall-mark service is per family), IPv4 when it has none.
func markFamilies(cands []candidate) []lvs.Family {
	var fams []lvs.Family
	for _, f := range []lvs.Family{lvs.IPv4, lvs.IPv6} {
		if slices.ContainsFunc(cands, func(c candidate) bool { return lvs.FamilyOf(c.addr) == f }) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		fams = append(fams, lvs.IPv4)
	}
	return fams
}

// destinations applies the per-service rules (family, traffic policy, ready/fallback/drain,
// dedupe) to the candidates of one port.
func (vi *vsInfo) destinations(pb *portBackends, f lvs.Family, svcPort uint16, node string) []Destination {
	eligible := func(c *candidate) bool {
		if vi.cfg.fwd.method != lvs.Tunnel && lvs.FamilyOf(c.addr) != f {
			return false
		}
		return !vi.cfg.local || c.node == node
	}
	anyReady := false
	for i := range pb.cands {
		if c := &pb.cands[i]; c.ready && eligible(c) {
			anyReady = true
			break
		}
	}
	byKey := make(map[lvs.DestinationKey]int, len(pb.cands))
	// Sized for every candidate: one allocation instead of a growth per doubling (most
	// candidates become destinations).
	out := make([]Destination, 0, len(pb.cands))
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
		if vi.cfg.fwd.method != lvs.Masquerade {
			port = svcPort
		}
		d := Destination{Destination: lvs.Destination{
			Address:        c.addr,
			Port:           port,
			Forwarding:     vi.cfg.fwd.method,
			UpperThreshold: c.upper,
			LowerThreshold: c.lower,
		}}
		if vi.cfg.fwd.method == lvs.Tunnel {
			d.TunnelType, d.TunnelPort, d.TunnelFlags = vi.cfg.fwd.tunnelType, vi.cfg.fwd.tunnelPort, vi.cfg.fwd.tunnelFlags
		}
		if active {
			d.Weight = c.weight
		} else {
			d.Draining = true
			d.DrainTimeout = vi.cfg.drain
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
	if len(out) == 0 {
		return nil // no destinations reads as nil, whatever the candidates were
	}
	slices.SortFunc(out, func(a, b Destination) int {
		return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
	})
	return out
}
