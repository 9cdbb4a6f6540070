package main

import (
	"fmt"
	"net"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
)

// moby is github.com/moby/ipvs used as kube-proxy and kube-router use it: one call (one request, one
// wait for its ACK) per service and per destination; reading is GetServices then GetDestinations per
// service.
type moby struct{ h *mobyipvs.Handle }

func newMoby(options) (contender, error) {
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("moby/ipvs: %w", err)
	}
	return &moby{h: h}, nil
}

func mobyService(s *Service) *mobyipvs.Service {
	return &mobyipvs.Service{
		Address:       net.IP(s.Addr.AsSlice()),
		Protocol:      syscall.IPPROTO_TCP,
		Port:          s.Port,
		SchedName:     Scheduler,
		Netmask:       0xffffffff,
		AddressFamily: syscall.AF_INET,
	}
}

func (m *moby) Program(t *Table) error {
	for i := range t.Services {
		s := &t.Services[i]
		ms := mobyService(s)
		if err := m.h.NewService(ms); err != nil {
			return fmt.Errorf("moby/ipvs: service %v:%d: %w", s.Addr, s.Port, err)
		}
		for _, d := range s.Dests {
			md := &mobyipvs.Destination{
				Address:         net.IP(d.Addr.AsSlice()),
				Port:            d.Port,
				Weight:          int(d.Weight),
				ConnectionFlags: mobyipvs.ConnectionFlagMasq,
				AddressFamily:   syscall.AF_INET,
			}
			if err := m.h.NewDestination(ms, md); err != nil {
				return fmt.Errorf("moby/ipvs: dest %v:%d of %v:%d: %w", d.Addr, d.Port, s.Addr, s.Port, err)
			}
		}
	}
	return nil
}

func (m *moby) Read() (services, dests int, err error) {
	svcs, err := m.h.GetServices()
	if err != nil {
		return 0, 0, fmt.Errorf("moby/ipvs: services: %w", err)
	}
	for _, s := range svcs {
		ds, err := m.h.GetDestinations(s)
		if err != nil {
			return 0, 0, fmt.Errorf("moby/ipvs: dests of %v:%d: %w", s.Address, s.Port, err)
		}
		dests += len(ds)
	}
	return len(svcs), dests, nil
}
