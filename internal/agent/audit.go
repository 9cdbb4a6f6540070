package agent

import (
	"maps"
	"time"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Repair kinds, counted by audits.
const (
	RepairServiceMissing        = "ServiceMissing"
	RepairServiceChanged        = "ServiceChanged"
	RepairDestinationMissing    = "DestinationMissing"
	RepairDestinationChanged    = "DestinationChanged"
	RepairDestinationUnexpected = "DestinationUnexpected"
)

// Adopt fills the model from the kernel's table at start-up: the services the checkpoint says
// the agent owns take the configuration and destinations the kernel has (so that a table that
// already matches what is desired costs no write), with the drains the checkpoint recorded;
// owned services the kernel lacks are marked absent; every other service is foreign.
func (m *Model) Adopt(table []ipvs.TableEntry, cp *Checkpoint) {
	*m = *NewModel()
	for i := range cp.Services {
		cs := &cp.Services[i]
		k := cs.Key.Canonical()
		o := &Owned{
			Generation: cs.Generation, Removing: cs.Removing, DrainTimeout: cs.DrainTimeout,
			Service: lvs.Service{ServiceKey: k},
		}
		m.services[k] = o
		m.setOwner(k, o, cs.Owner)
	}
	allDrains := cp.drains()
	for i := range table {
		e := &table[i]
		k := e.Key()
		o := m.services[k]
		if o == nil {
			m.foreign[k] = true
			continue
		}
		o.Service, o.Present = e.Service.Service, true
		drains := allDrains[k]
		o.Dests = make([]OwnedDest, 0, len(e.Destinations))
		for j := range e.Destinations {
			d := &e.Destinations[j]
			od := OwnedDest{Destination: d.Destination}
			if dr, ok := drains[d.Key()]; ok && d.Weight == 0 {
				od.DrainSince, od.DrainTimeout = dr.Since, dr.Timeout
			}
			o.setDest(od)
		}
	}
	for k := range m.services {
		m.touch(k)
		m.reindex(k)
	}
}

// PlanAudit returns the steps that repair every difference between the kernel's table and
// the owned services of the model (each step names its repair), and records the foreign
// services the table shows. Services and destinations that are draining and that the kernel
// lost are forgotten, not re-created.
func (m *Model) PlanAudit(table []ipvs.TableEntry) []Step { return m.PlanAuditSince(table, m.seq) }

// PlanAuditSince is PlanAudit for a table whose read began when the model's Seq was since:
// services the model changed after that (an add, a delete, a refused add) are left as they
// are, since the table may predate the change; the next audit covers them.
func (m *Model) PlanAuditSince(table []ipvs.TableEntry, since uint64) []Step {
	later := func(k lvs.ServiceKey) bool { return m.modified[k] > since }
	kernel := make(map[lvs.ServiceKey]*ipvs.TableEntry, len(table))
	foreign := map[lvs.ServiceKey]bool{}
	for k := range m.foreign {
		if later(k) {
			foreign[k] = true
		}
	}
	for i := range table {
		k := table[i].Key()
		kernel[k] = &table[i]
		if m.services[k] == nil && !later(k) {
			foreign[k] = true
		}
	}
	m.foreign = foreign
	var steps []Step
	for _, k := range m.Keys() {
		o := m.services[k]
		if !o.Present || later(k) {
			continue // absent: the next sync adds it (or forgets it)
		}
		steps = auditService(steps, o, kernel[k])
	}
	maps.DeleteFunc(m.modified, func(_ lvs.ServiceKey, seq uint64) bool { return seq <= since })
	return steps
}

func auditService(steps []Step, o *Owned, e *ipvs.TableEntry) []Step {
	svc := &o.Service
	base := Step{Owner: o.Owner, Generation: o.Generation, Removing: o.Removing, ServiceDrainTimeout: o.DrainTimeout}
	if e == nil {
		if o.Removing {
			s := base
			s.Op, s.Forget = ipvs.Op{Service: svc}, true
			return append(steps, s)
		}
		s := base
		s.Op, s.Repair = ipvs.Op{Kind: ipvs.AddService, Service: svc}, RepairServiceMissing
		steps = append(steps, s)
		for i := range o.Dests {
			od := &o.Dests[i]
			s := base
			if od.Draining() {
				s.Op, s.Forget = ipvs.Op{Service: svc, Destination: destCopy(od)}, true
			} else {
				s.Op, s.Repair = ipvs.Op{Kind: ipvs.AddDestination, Service: svc, Destination: destCopy(od)}, RepairDestinationMissing
			}
			steps = append(steps, s)
		}
		return steps
	}
	if !sameService(svc, &e.Service.Service) {
		s := base
		s.Op, s.Repair = ipvs.Op{Kind: ipvs.UpdateService, Service: svc}, RepairServiceChanged
		steps = append(steps, s)
	}
	return auditDests(steps, base, o, e)
}

func auditDests(steps []Step, base Step, o *Owned, e *ipvs.TableEntry) []Step {
	svc := &o.Service
	inKernel := make(map[lvs.DestinationKey]*ipvs.Destination, len(e.Destinations))
	for i := range e.Destinations {
		inKernel[e.Destinations[i].Key()] = &e.Destinations[i]
	}
	for i := range o.Dests {
		od := &o.Dests[i]
		dk := od.Key()
		kd := inKernel[dk]
		delete(inKernel, dk)
		s := base
		s.DrainSince, s.DrainTimeout = od.DrainSince, od.DrainTimeout
		switch {
		case kd == nil && od.Draining():
			s.Op, s.Forget = ipvs.Op{Service: svc, Destination: destCopy(od)}, true
		case kd == nil:
			s.Op, s.Repair = ipvs.Op{Kind: ipvs.AddDestination, Service: svc, Destination: destCopy(od)}, RepairDestinationMissing
		case !sameDest(&od.Destination, &kd.Destination):
			s.Op, s.Repair = ipvs.Op{Kind: ipvs.UpdateDestination, Service: svc, Destination: destCopy(od)}, RepairDestinationChanged
		default:
			continue
		}
		steps = append(steps, s)
	}
	for i := range e.Destinations {
		kd := &e.Destinations[i]
		if inKernel[kd.Key()] == nil {
			continue
		}
		s := base
		d := kd.Destination
		s.Op, s.Repair = ipvs.Op{Kind: ipvs.DeleteDestination, Service: svc, Destination: &d}, RepairDestinationUnexpected
		steps = append(steps, s)
	}
	return steps
}

// drainRecord is one drain as the checkpoint keeps it.
type drainRecord struct {
	Since   time.Time
	Timeout time.Duration
}
