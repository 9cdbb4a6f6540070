package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// fakeKernel is an in-memory IPVS table with the kernel's answers to each operation (exists,
// no such service, no such destination), counting the requests it gets. It knows nothing of
// the agent's model: it only holds what was written to it.
type fakeKernel struct {
	mu       sync.Mutex
	services map[lvs.ServiceKey]*fakeService
	writes   int
	dumps    int
	byKind   map[ipvs.OpKind]int
	// conns are the connection counts Destinations reports, by service and destination.
	conns map[lvs.ServiceKey]map[lvs.DestinationKey][2]uint32
	// fail makes Apply fail as a whole (nothing applied).
	fail error
}

type fakeService struct {
	svc   lvs.Service
	dests map[lvs.DestinationKey]lvs.Destination
	order []lvs.DestinationKey
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{services: map[lvs.ServiceKey]*fakeService{}, byKind: map[ipvs.OpKind]int{},
		conns: map[lvs.ServiceKey]map[lvs.DestinationKey][2]uint32{}}
}

var (
	errExists   = fmt.Errorf("fake: %w", ipvs.ErrServiceExists)
	errNoSvc    = fmt.Errorf("fake: %w", ipvs.ErrServiceNotFound)
	errDExists  = fmt.Errorf("fake: %w", ipvs.ErrDestExists)
	errNoDest   = fmt.Errorf("fake: %w", ipvs.ErrDestNotFound)
	errNotFound = errors.New("fake: no such object")
)

func (f *fakeKernel) Apply(_ context.Context, ops []ipvs.Op) ([]error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := make([]error, len(ops))
	if f.fail != nil {
		for i := range res {
			res[i] = f.fail
		}
		return res, f.fail
	}
	for i := range ops {
		f.writes++
		f.byKind[ops[i].Kind]++
		res[i] = f.apply(&ops[i])
	}
	return res, nil
}

func (f *fakeKernel) apply(op *ipvs.Op) error {
	k := op.Service.Key()
	s := f.services[k]
	switch op.Kind {
	case ipvs.AddService:
		if s != nil {
			return errExists
		}
		f.services[k] = &fakeService{svc: *op.Service, dests: map[lvs.DestinationKey]lvs.Destination{}}
		return nil
	case ipvs.UpdateService, ipvs.DeleteService, ipvs.AddDestination, ipvs.UpdateDestination, ipvs.DeleteDestination:
		if s == nil {
			return errNoSvc
		}
	default:
		return errNotFound
	}
	switch op.Kind {
	case ipvs.UpdateService:
		s.svc = *op.Service
	case ipvs.DeleteService:
		delete(f.services, k)
	case ipvs.AddDestination:
		dk := op.Destination.Key()
		if _, ok := s.dests[dk]; ok {
			return errDExists
		}
		s.dests[dk] = *op.Destination
		s.order = append(s.order, dk)
	case ipvs.UpdateDestination:
		dk := op.Destination.Key()
		if _, ok := s.dests[dk]; !ok {
			return errNoDest
		}
		s.dests[dk] = *op.Destination
	case ipvs.DeleteDestination:
		dk := op.Destination.Key()
		if _, ok := s.dests[dk]; !ok {
			return errNoDest
		}
		delete(s.dests, dk)
		s.order = slices.DeleteFunc(s.order, func(x lvs.DestinationKey) bool { return x == dk })
	}
	return nil
}

func (f *fakeKernel) Table(context.Context) ([]ipvs.TableEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps += 1 + len(f.services)
	out := make([]ipvs.TableEntry, 0, len(f.services))
	for k, s := range f.services {
		e := ipvs.TableEntry{Service: ipvs.Service{Service: s.svc}}
		e.Flags |= lvs.FlagHashed // as the kernel reports
		for _, dk := range s.order {
			e.Destinations = append(e.Destinations, f.dest(k, s, dk))
		}
		out = append(out, e)
	}
	return out, nil
}

// Services is one dump of the services (counted as one).
func (f *fakeKernel) Services(context.Context) ([]ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	out := make([]ipvs.Service, 0, len(f.services))
	for _, s := range f.services {
		svc := ipvs.Service{Service: s.svc}
		svc.Flags |= lvs.FlagHashed
		out = append(out, svc)
	}
	return out, nil
}

func (f *fakeKernel) dest(k lvs.ServiceKey, s *fakeService, dk lvs.DestinationKey) ipvs.Destination {
	d := ipvs.Destination{Destination: s.dests[dk]}
	if d.Family == 0 {
		d.Family = lvs.FamilyOf(d.Address)
	}
	c := f.conns[k][dk]
	d.ActiveConns, d.InactiveConns = c[0], c[1]
	return d
}

func (f *fakeKernel) Destinations(_ context.Context, svc *lvs.Service) ([]ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	k := svc.Key()
	s := f.services[k]
	if s == nil {
		return nil, errNoSvc
	}
	var out []ipvs.Destination
	for _, dk := range s.order {
		out = append(out, f.dest(k, s, dk))
	}
	return out, nil
}

// setConns sets the active and inactive connections a destination reports.
func (f *fakeKernel) setConns(k lvs.ServiceKey, dk lvs.DestinationKey, active, inactive uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns[k] == nil {
		f.conns[k] = map[lvs.DestinationKey][2]uint32{}
	}
	f.conns[k][dk] = [2]uint32{active, inactive}
}

// hand applies operations as a person with ipvsadm would, not counted as the agent's.
func (f *fakeKernel) hand(ops ...ipvs.Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ops {
		if err := f.apply(&ops[i]); err != nil {
			panic(err)
		}
	}
}

func (f *fakeKernel) counts() (writes, dumps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.dumps
}

func (f *fakeKernel) resetCounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes, f.dumps, f.byKind = 0, 0, map[ipvs.OpKind]int{}
}

// dump renders the table as ipvsadm -Sn would list it, sorted, for comparisons.
func (f *fakeKernel) dump() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, s := range f.services {
		out = append(out, fmt.Sprintf("-A %s -s %s", k, s.svc.Scheduler))
		for _, dk := range s.order {
			d := s.dests[dk]
			out = append(out, fmt.Sprintf("-a %s -r %s -w %d %s", k, dk, d.Weight, d.Forwarding))
		}
	}
	slices.Sort(out)
	return out
}

// kind returns how many operations of kind k the fake applied since the last reset.
func (f *fakeKernel) kind(k ipvs.OpKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byKind[k]
}

// kinds returns a copy of the per-kind counts.
func (f *fakeKernel) kinds() map[ipvs.OpKind]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[ipvs.OpKind]int, len(f.byKind))
	for k, v := range f.byKind {
		out[k] = v
	}
	return out
}
