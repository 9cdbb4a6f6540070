package agent

import (
	"time"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// PlanDrain returns the steps that end drains of the owned service k, given its destinations
// as one dump of the kernel just reported them: a draining destination goes when its active
// and inactive connections reach zero or its deadline passes; a service being removed goes
// (with its destinations, in one operation) when none of them has to stay. Draining
// destinations the kernel no longer has are forgotten.
func (m *Model) PlanDrain(k lvs.ServiceKey, kernel []ipvs.Destination, now time.Time) []Step {
	o := m.services[k]
	if o == nil || !o.Present {
		return nil
	}
	conns := make(map[lvs.DestinationKey]uint32, len(kernel))
	for i := range kernel {
		conns[kernel[i].Key()] = kernel[i].ActiveConns + kernel[i].InactiveConns
	}
	svc := &o.Service
	base := Step{Owner: o.Owner, Generation: o.Generation, Removing: o.Removing, ServiceDrainTimeout: o.DrainTimeout}
	var steps []Step
	stay := 0
	for i := range o.Dests {
		od := &o.Dests[i]
		n, inKernel := conns[od.Key()]
		switch {
		case !inKernel:
			s := base
			s.Op, s.Forget = ipvs.Op{Service: svc, Destination: destCopy(od)}, true
			steps = append(steps, s)
		case od.Draining() && (n == 0 || !now.Before(od.Deadline())):
			s := base
			s.Op = ipvs.Op{Kind: ipvs.DeleteDestination, Service: svc, Destination: destCopy(od)}
			steps = append(steps, s)
		default:
			stay++
		}
	}
	if o.Removing && stay == 0 {
		s := base
		s.Op = ipvs.Op{Kind: ipvs.DeleteService, Service: svc}
		return []Step{s}
	}
	return steps
}

// NextDeadline returns the earliest drain deadline of the model, and false when nothing
// drains.
func (m *Model) NextDeadline() (time.Time, bool) {
	var next time.Time
	for k := range m.draining {
		for i := range m.services[k].Dests {
			if d := &m.services[k].Dests[i]; d.Draining() && (next.IsZero() || d.Deadline().Before(next)) {
				next = d.Deadline()
			}
		}
	}
	return next, !next.IsZero()
}

// destCopy returns a copy of od's destination for a step: the model's destinations move when
// an earlier step of the batch commits.
func destCopy(od *OwnedDest) *lvs.Destination {
	d := od.Destination
	return &d
}
