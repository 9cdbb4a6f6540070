package agent

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Want is what one VirtualService wants on the node: its generation and its IPVS services
// (none when it no longer applies to the node, or no longer exists).
type Want struct {
	Key        types.NamespacedName
	Generation int64
	Services   []desired.Service
}

// Refusal is a desired service the agent did not program, and why.
type Refusal struct {
	Key lvs.ServiceKey
	// Reason is ReasonConflict (another owner's service has the key) or ReasonUnmanaged (the
	// address is outside --managed-cidrs).
	Reason  string
	Message string
}

// Refusal reasons.
const (
	ReasonConflict  = "Conflict"
	ReasonUnmanaged = "Unmanaged"
)

// Plan returns the steps that take what the model holds for w.Key to w, at time now, and the
// desired services it will not program. allow, when non-nil, refuses keys outside what the
// agent manages.
//
// A key owned for another VirtualService that w now wants is handed over in place (the
// cluster-wide conflict resolution of pkg/desired already chose w). Services and destinations
// that differ are updated in place; destinations that go, or terminate, drain at weight 0
// unless they are UDP or the drain timeout is 0; services that go drain before removal.
func (m *Model) Plan(w *Want, now time.Time, allow func(lvs.ServiceKey) error) ([]Step, []Refusal) {
	return m.plan(w, now, allow, nil, nil)
}

// PlanBatch plans wants together, as one batch: a key that one VirtualService lets go and
// another takes in the same batch is handed over in place, not removed (planned one by one,
// the first one's drain would land after the second one's takeover and leave the new
// owner's destinations at weight 0). It returns the steps in the order of wants and the
// refusals by VirtualService.
func (m *Model) PlanBatch(wants []Want, now time.Time, allow func(lvs.ServiceKey) error) ([]Step, map[types.NamespacedName][]Refusal) {
	claimed := map[lvs.ServiceKey]types.NamespacedName{}
	for i := range wants {
		for j := range wants[i].Services {
			claimed[wants[i].Services[j].Key()] = wants[i].Key
		}
	}
	var steps []Step
	refusals := make(map[types.NamespacedName][]Refusal, len(wants))
	for i := range wants {
		w := &wants[i]
		var ref []Refusal
		steps, ref = m.plan(w, now, allow, steps, func(k lvs.ServiceKey) bool {
			owner, ok := claimed[k]
			return ok && owner != w.Key
		})
		refusals[w.Key] = ref
	}
	return steps, refusals
}

// plan appends w's steps to steps; handedOver, when non-nil, says which keys w let go of are
// taken by another VirtualService of the batch.
func (m *Model) plan(w *Want, now time.Time, allow func(lvs.ServiceKey) error, steps []Step, handedOver func(lvs.ServiceKey) bool) ([]Step, []Refusal) {
	var refused []Refusal
	wanted := make(map[lvs.ServiceKey]bool, len(w.Services))
	for i := range w.Services {
		ws := &w.Services[i]
		k := ws.Key()
		wanted[k] = true
		if allow != nil {
			if err := allow(k); err != nil {
				refused = append(refused, Refusal{Key: k, Reason: ReasonUnmanaged, Message: err.Error()})
				continue
			}
		}
		o := m.services[k]
		if o == nil && m.foreign[k] {
			refused = append(refused, Refusal{Key: k, Reason: ReasonConflict,
				Message: "the node's IPVS table has a service on " + k.String() + " that kubelvs did not create"})
			continue
		}
		steps = m.planService(steps, w, ws, o, now)
	}
	for _, k := range m.KeysOf(w.Key) {
		if !wanted[k] && (handedOver == nil || !handedOver(k)) {
			steps = m.planRemoval(steps, m.services[k], now)
		}
	}
	return steps, refused
}

// planService appends the steps that take o (nil: not owned) to ws.
func (m *Model) planService(steps []Step, w *Want, ws *desired.Service, o *Owned, now time.Time) []Step {
	base := Step{Owner: w.Key, Generation: w.Generation, ServiceDrainTimeout: ws.DrainTimeout}
	svc := &ws.Service
	if o == nil || !o.Present {
		s := base
		s.Op = ipvs.Op{Kind: ipvs.AddService, Service: svc}
		steps = append(steps, s)
		for i := range ws.Destinations {
			wd := &ws.Destinations[i]
			if wd.Draining {
				continue // never programmed: nothing to drain
			}
			s := base
			s.Op = ipvs.Op{Kind: ipvs.AddDestination, Service: svc, Destination: &wd.Destination}
			steps = append(steps, s)
		}
		return steps
	}
	switch {
	case !sameService(&o.Service, svc):
		s := base
		s.Op = ipvs.Op{Kind: ipvs.UpdateService, Service: svc}
		steps = append(steps, s)
	case o.Owner != w.Key || o.Generation != w.Generation || o.Removing || o.DrainTimeout != ws.DrainTimeout:
		s := base
		s.Op = ipvs.Op{Service: &o.Service}
		steps = append(steps, s)
	}
	seen := make(map[lvs.DestinationKey]bool, len(ws.Destinations))
	for i := range ws.Destinations {
		wd := &ws.Destinations[i]
		seen[wd.Key()] = true
		steps = planDest(steps, base, svc, o.Dest(wd.Key()), wd, now)
	}
	for i := range o.Dests {
		if od := &o.Dests[i]; !seen[od.Key()] && !od.Draining() {
			steps = drainDest(steps, base, svc, od, ws.DrainTimeout, now)
		}
	}
	return steps
}

// planDest appends the steps that take od (nil: not programmed) to wd.
func planDest(steps []Step, base Step, svc *lvs.Service, od *OwnedDest, wd *desired.Destination, now time.Time) []Step {
	switch {
	case od == nil && wd.Draining:
		return steps
	case od == nil:
		s := base
		s.Op = ipvs.Op{Kind: ipvs.AddDestination, Service: svc, Destination: &wd.Destination}
		return append(steps, s)
	case wd.Draining && od.Draining():
		// Keep the drain's start; follow a configuration change (thresholds) at weight 0.
		want := wd.Destination
		want.Weight = 0
		if sameDest(&od.Destination, &want) {
			return steps
		}
		s := base
		s.Op = ipvs.Op{Kind: ipvs.UpdateDestination, Service: svc, Destination: &want}
		s.DrainSince, s.DrainTimeout = od.DrainSince, od.DrainTimeout
		return append(steps, s)
	case wd.Draining:
		return drainDest(steps, base, svc, od, wd.DrainTimeout, now)
	case od.Draining() || !sameDest(&od.Destination, &wd.Destination):
		// A draining destination that is wanted again is updated back, not deleted and re-added.
		s := base
		s.Op = ipvs.Op{Kind: ipvs.UpdateDestination, Service: svc, Destination: &wd.Destination}
		return append(steps, s)
	}
	return steps
}

// drainDest appends the step that starts draining od: weight 0, or removal at once for UDP and
// a zero timeout.
func drainDest(steps []Step, base Step, svc *lvs.Service, od *OwnedDest, timeout time.Duration, now time.Time) []Step {
	s := base
	d := destCopy(od)
	if timeout <= 0 || svc.Protocol == lvs.UDP {
		s.Op = ipvs.Op{Kind: ipvs.DeleteDestination, Service: svc, Destination: d}
		return append(steps, s)
	}
	d.Weight = 0
	s.Op = ipvs.Op{Kind: ipvs.UpdateDestination, Service: svc, Destination: d}
	if od.Weight == 0 {
		// The kernel has it at weight 0 already (a drain whose start a crash kept out of the
		// checkpoint, adopted from the table): the drain starts in the model only.
		s.Op.Kind = 0
	}
	s.DrainSince, s.DrainTimeout = now, timeout
	return append(steps, s)
}

// planRemoval appends the steps that remove o, whose VirtualService no longer wants it: its
// destinations drain (weight 0), and the drain poll deletes the service once they are gone.
// UDP services, services without destinations and a zero drain timeout go at once.
func (m *Model) planRemoval(steps []Step, o *Owned, now time.Time) []Step {
	svc := &o.Service
	base := Step{Owner: o.Owner, Generation: o.Generation, Removing: true, ServiceDrainTimeout: o.DrainTimeout}
	if !o.Present {
		s := base
		s.Op, s.Forget = ipvs.Op{Service: svc}, true
		return append(steps, s)
	}
	if o.DrainTimeout <= 0 || svc.Protocol == lvs.UDP || !o.hasLiveDests() {
		s := base
		s.Op = ipvs.Op{Kind: ipvs.DeleteService, Service: svc}
		return append(steps, s)
	}
	if !o.Removing {
		s := base
		s.Op = ipvs.Op{Service: svc}
		steps = append(steps, s)
	}
	for i := range o.Dests {
		if od := &o.Dests[i]; !od.Draining() {
			steps = drainDest(steps, base, svc, od, o.DrainTimeout, now)
		}
	}
	return steps
}

// hasLiveDests reports whether the service has a destination that may still carry
// connections.
func (o *Owned) hasLiveDests() bool { return len(o.Dests) > 0 }

// sameService reports whether the kernel would see a and b as one configuration.
func sameService(a, b *lvs.Service) bool {
	na, nb := normService(*a), normService(*b)
	return na == nb
}

func normService(s lvs.Service) lvs.Service {
	s.ServiceKey = s.Key()
	if s.Scheduler == "" {
		s.Scheduler = "wlc"
	}
	s.Flags &^= lvs.FlagHashed
	if bits := s.Family.Bits(); s.PersistencePrefixLength == 0 || int(s.PersistencePrefixLength) > bits {
		s.PersistencePrefixLength = uint8(bits)
	}
	return s
}

// sameDest reports whether the kernel would see a and b as one configuration.
func sameDest(a, b *lvs.Destination) bool { return normDest(*a) == normDest(*b) }

func normDest(d lvs.Destination) lvs.Destination {
	d.Address = d.Address.Unmap()
	if d.Family == 0 {
		d.Family = lvs.FamilyOf(d.Address)
	}
	if d.Forwarding != lvs.Tunnel {
		d.TunnelType, d.TunnelPort, d.TunnelFlags = 0, 0, 0
	}
	return d
}
