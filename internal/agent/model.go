package agent

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Model is what the agent owns in the kernel's table and what it last programmed there, plus
// the keys of services it saw that belong to others.
type Model struct {
	services map[lvs.ServiceKey]*Owned
	// foreign are services in the kernel the agent does not own, as of the last table read
	// or the last add refused with "exists".
	foreign map[lvs.ServiceKey]bool
	// byOwner indexes services by owner, each owner's keys sorted: a sync of one
	// VirtualService must not scan them all. (Most own one or two services: a slice costs a
	// tenth of a set.)
	byOwner map[types.NamespacedName][]lvs.ServiceKey
	// dirty are the services whose checkpoint record (ownership, generation, drains) changed
	// since CheckpointSaved: a weight change costs no checkpoint write, and a write encodes
	// only what changed.
	dirty map[lvs.ServiceKey]struct{}
	// added: a service was added since CheckpointSaved (its ownership must be recorded at
	// once; other changes may wait).
	added bool
	// draining holds the services the drain poll dumps (present and being removed, or with
	// draining destinations) with their number of draining destinations; kept up to date on
	// every change so that neither the loop nor a poll scans every service.
	draining map[lvs.ServiceKey]int
	// seq counts the model's changes; modified holds the seq of each service's last change
	// (kept until an audit no longer needs it), so that an audit planned from a table read
	// while changes were applied leaves alone what changed after the read began.
	seq      uint64
	modified map[lvs.ServiceKey]uint64
}

// Seq returns the number of changes made to the model so far.
func (m *Model) Seq() uint64 { return m.seq }

// ChangedSince reports whether service k changed after the model's Seq was since (while the
// model keeps that: until an audit planned from a later Seq).
func (m *Model) ChangedSince(k lvs.ServiceKey, since uint64) bool {
	return m.modified[k.Canonical()] > since
}

// modify records a change of service k.
func (m *Model) modify(k lvs.ServiceKey) {
	m.seq++
	m.modified[k] = m.seq
}

// CheckpointChanged reports whether what the checkpoint records changed since the last call
// of CheckpointSaved.
func (m *Model) CheckpointChanged() bool { return len(m.dirty) > 0 }

// CheckpointUrgent reports whether a service was added since the last CheckpointSaved: its
// ownership must be written before anything else happens, or a crash would leave a service
// the agent made looking foreign.
func (m *Model) CheckpointUrgent() bool { return m.added }

// CheckpointSaved records that the checkpoint was written.
func (m *Model) CheckpointSaved() { clear(m.dirty); m.added = false }

// touch records that service k's checkpoint record changed.
func (m *Model) touch(k lvs.ServiceKey) { m.dirty[k] = struct{}{} }

// reindex brings the drain index up to date for service k.
func (m *Model) reindex(k lvs.ServiceKey) {
	o := m.services[k]
	if o == nil {
		delete(m.draining, k)
		return
	}
	n := 0
	for i := range o.Dests {
		if o.Dests[i].Draining() {
			n++
		}
	}
	if n > 0 || (o.Removing && o.Present) {
		m.draining[k] = n
	} else {
		delete(m.draining, k)
	}
}

// Owned is one IPVS service the agent owns.
type Owned struct {
	Owner      types.NamespacedName
	Generation int64
	// Service is the configuration as programmed; meaningful only when Present.
	Service lvs.Service
	// Present: the kernel has the service (false for a service known only from the
	// checkpoint and not found in the kernel).
	Present bool
	// Removing: its VirtualService no longer wants it; it drains, then goes.
	Removing bool
	// DrainTimeout is its VirtualService's drain timeout, for destinations that are removed.
	DrainTimeout time.Duration
	// Dests are its destinations sorted by key (a slice costs half of a map of pointers, at
	// 100,000 destinations on a node). Steps never point into it: a commit moves them.
	Dests []OwnedDest
}

// Dest returns the destination with key dk, or nil; the pointer is good until o changes.
func (o *Owned) Dest(dk lvs.DestinationKey) *OwnedDest {
	if i, ok := o.destIndex(dk); ok {
		return &o.Dests[i]
	}
	return nil
}

func (o *Owned) destIndex(dk lvs.DestinationKey) (int, bool) {
	return slices.BinarySearchFunc(o.Dests, dk, func(d OwnedDest, k lvs.DestinationKey) int {
		return compareDestKeys(d.Key(), k)
	})
}

// setDest records d, replacing the destination with its key.
func (o *Owned) setDest(d OwnedDest) {
	i, ok := o.destIndex(d.Key())
	if ok {
		o.Dests[i] = d
		return
	}
	if len(o.Dests) == cap(o.Dests) {
		// Grow by a quarter, not append's double (slices.Grow doubles too): most services are
		// built one add at a time and never grow again.
		grown := make([]OwnedDest, len(o.Dests), len(o.Dests)+len(o.Dests)/4+1)
		copy(grown, o.Dests)
		o.Dests = grown
	}
	o.Dests = slices.Insert(o.Dests, i, d)
}

// deleteDest drops the destination with key dk.
func (o *Owned) deleteDest(dk lvs.DestinationKey) {
	if i, ok := o.destIndex(dk); ok {
		o.Dests = slices.Delete(o.Dests, i, i+1)
	}
}

func compareDestKeys(a, b lvs.DestinationKey) int {
	return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
}

// OwnedDest is one destination of an owned service as programmed.
type OwnedDest struct {
	lvs.Destination
	// DrainSince is when the destination started draining (weight 0); zero when it is not.
	DrainSince   time.Time
	DrainTimeout time.Duration
}

// Draining reports whether the destination is draining.
func (d *OwnedDest) Draining() bool { return !d.DrainSince.IsZero() }

// Deadline is when a draining destination is removed however many connections it still has.
func (d *OwnedDest) Deadline() time.Time { return d.DrainSince.Add(d.DrainTimeout) }

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{services: map[lvs.ServiceKey]*Owned{}, foreign: map[lvs.ServiceKey]bool{},
		byOwner: map[types.NamespacedName][]lvs.ServiceKey{},
		dirty:   map[lvs.ServiceKey]struct{}{}, draining: map[lvs.ServiceKey]int{},
		modified: map[lvs.ServiceKey]uint64{}}
}

// Owned returns the owned service with key k, or nil.
func (m *Model) Owned(k lvs.ServiceKey) *Owned { return m.services[k] }

// Foreign reports whether k was last seen as a service the agent does not own.
func (m *Model) Foreign(k lvs.ServiceKey) bool { return m.foreign[k] }

// Keys returns the keys of the owned services, sorted.
func (m *Model) Keys() []lvs.ServiceKey {
	keys := slices.Collect(maps.Keys(m.services))
	slices.SortFunc(keys, compareKeys)
	return keys
}

// KeysOf returns the keys of the services owned for the VirtualService vs, sorted.
func (m *Model) KeysOf(vs types.NamespacedName) []lvs.ServiceKey {
	return slices.Clone(m.byOwner[vs])
}

// setOwner records o (key k) as owned by owner in the index.
func (m *Model) setOwner(k lvs.ServiceKey, o *Owned, owner types.NamespacedName) {
	if o.Owner == owner {
		if _, ok := slices.BinarySearchFunc(m.byOwner[owner], k, compareKeys); ok {
			return
		}
	}
	m.unindex(k, o.Owner)
	o.Owner = owner
	keys := m.byOwner[owner]
	i, _ := slices.BinarySearchFunc(keys, k, compareKeys)
	m.byOwner[owner] = slices.Insert(keys, i, k)
}

func (m *Model) unindex(k lvs.ServiceKey, owner types.NamespacedName) {
	keys := m.byOwner[owner]
	i, ok := slices.BinarySearchFunc(keys, k, compareKeys)
	switch {
	case !ok:
	case len(keys) == 1:
		delete(m.byOwner, owner)
	default:
		m.byOwner[owner] = slices.Delete(keys, i, i+1)
	}
}

// remove drops the owned service k.
func (m *Model) remove(k lvs.ServiceKey) {
	if o := m.services[k]; o != nil {
		m.unindex(k, o.Owner)
		delete(m.services, k)
		delete(m.draining, k)
		m.touch(k)
	}
}

// dropDest drops a destination of o (key k).
func (m *Model) dropDest(k lvs.ServiceKey, o *Owned, dk lvs.DestinationKey) {
	if d := o.Dest(dk); d != nil && d.Draining() {
		m.touch(k)
	}
	o.deleteDest(dk)
	m.reindex(k)
}

// Owners returns every VirtualService that owns a service, sorted.
func (m *Model) Owners() []types.NamespacedName {
	out := slices.Collect(maps.Keys(m.byOwner))
	slices.SortFunc(out, compareNames)
	return out
}

// Draining returns the keys of owned services with at least one draining destination, or that
// are being removed, sorted: the services the drain poll dumps.
func (m *Model) Draining() []lvs.ServiceKey {
	keys := slices.Collect(maps.Keys(m.draining))
	slices.SortFunc(keys, compareKeys)
	return keys
}

// HasDraining reports whether anything drains (Draining is not empty).
func (m *Model) HasDraining() bool { return len(m.draining) > 0 }

// DrainingDestinations returns the number of draining destinations.
func (m *Model) DrainingDestinations() int {
	n := 0
	for _, c := range m.draining {
		n += c
	}
	return n
}

// Counts returns the number of owned services present in the kernel and of their destinations.
func (m *Model) Counts() (services, dests int) {
	for _, o := range m.services {
		if o.Present {
			services++
			dests += len(o.Dests)
		}
	}
	return services, dests
}

// Commit records in the model that the kernel accepted s (or, for a step without a kernel
// operation, what it says of the model).
func (m *Model) Commit(s *Step) {
	k := s.Op.Service.Key()
	defer m.reindex(k)
	m.modify(k)
	o := m.services[k]
	switch s.Op.Kind {
	case 0:
		if s.Forget {
			m.forget(k, s.Op.Destination)
			return
		}
		if s.Op.Destination != nil && o != nil {
			m.commitDest(k, o, s) // a drain start without a kernel operation (drainDest)
		}
	case ipvs.AddService, ipvs.UpdateService:
		if o == nil {
			o = &Owned{}
			m.services[k] = o
			m.touch(k)
			m.added = true
		}
		o.Service, o.Present = *s.Op.Service, true
		delete(m.foreign, k)
	case ipvs.DeleteService:
		m.remove(k)
		return
	case ipvs.AddDestination, ipvs.UpdateDestination:
		if o == nil {
			return
		}
		m.commitDest(k, o, s)
	case ipvs.DeleteDestination:
		if o != nil {
			m.dropDest(k, o, s.Op.Destination.Key())
		}
	}
	if o != nil {
		if o.Owner != s.Owner || o.Generation != s.Generation || o.Removing != s.Removing || o.DrainTimeout != s.ServiceDrainTimeout {
			m.touch(k)
		}
		m.setOwner(k, o, s.Owner)
		o.Generation, o.Removing, o.DrainTimeout = s.Generation, s.Removing, s.ServiceDrainTimeout
	}
}

// commitDest records s's destination of service k (o) as s leaves it.
func (m *Model) commitDest(k lvs.ServiceKey, o *Owned, s *Step) {
	dk := s.Op.Destination.Key()
	if old := o.Dest(dk); (old != nil && (!old.DrainSince.Equal(s.DrainSince) || old.DrainTimeout != s.DrainTimeout)) ||
		(old == nil && !s.DrainSince.IsZero()) {
		m.touch(k)
	}
	o.setDest(OwnedDest{Destination: *s.Op.Destination, DrainSince: s.DrainSince, DrainTimeout: s.DrainTimeout})
}

// Refused records that a service could not be added because another owner has it.
func (m *Model) Refused(k lvs.ServiceKey) {
	k = k.Canonical()
	m.foreign[k] = true
	m.modify(k)
}

// forget drops what the model knows of a destination (or, with d nil, a whole service) the
// kernel no longer has.
func (m *Model) forget(k lvs.ServiceKey, d *lvs.Destination) {
	if d == nil {
		m.remove(k)
		return
	}
	if o := m.services[k]; o != nil {
		m.dropDest(k, o, d.Key())
	}
}

// Step is one kernel operation and what the model records once the kernel accepted it.
//
// A step whose Op.Kind is zero sends nothing: it updates the model's bookkeeping (owner,
// generation) or, with Forget, drops a destination (Op.Destination) or service the kernel no
// longer has.
type Step struct {
	Op         ipvs.Op
	Forget     bool
	Owner      types.NamespacedName
	Generation int64
	// Removing, ServiceDrainTimeout: the owned service's state after the step.
	Removing            bool
	ServiceDrainTimeout time.Duration
	// DrainSince and DrainTimeout: for destination adds and updates, the drain the
	// destination is in after the step (zero DrainSince: not draining).
	DrainSince   time.Time
	DrainTimeout time.Duration
	// Repair names what an audit step repairs ("" outside audits).
	Repair string
}

func compareKeys(a, b lvs.ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.FirewallMark, b.FirewallMark),
		cmp.Compare(a.Family, b.Family),
		a.Address.Compare(b.Address),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Protocol, b.Protocol),
	)
}

func compareNames(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
