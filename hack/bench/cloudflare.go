package main

import (
	"fmt"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
)

// cloudflare is github.com/cloudflare/ipvs: one call per object (the library has no batching);
// reading is Services then Destinations per service.
type cloudflare struct{ c cfipvs.Client }

func newCloudflare(options) (contender, error) {
	c, err := cfipvs.New()
	if err != nil {
		return nil, fmt.Errorf("cloudflare/ipvs: %w", err)
	}
	return &cloudflare{c: c}, nil
}

func cfService(s *Service) cfipvs.Service {
	return cfipvs.Service{
		Address:   s.Addr,
		Netmask:   netmask.MaskFrom(32, 32),
		Scheduler: Scheduler,
		Port:      s.Port,
		Family:    cfipvs.INET,
		Protocol:  cfipvs.TCP,
	}
}

func (c *cloudflare) Program(t *Table) error {
	for i := range t.Services {
		s := &t.Services[i]
		cs := cfService(s)
		if err := c.c.CreateService(cs); err != nil {
			return fmt.Errorf("cloudflare/ipvs: service %v:%d: %w", s.Addr, s.Port, err)
		}
		for _, d := range s.Dests {
			cd := cfipvs.Destination{
				Address:   d.Addr,
				FwdMethod: cfipvs.Masquerade,
				Weight:    d.Weight,
				Port:      d.Port,
				Family:    cfipvs.INET,
			}
			if err := c.c.CreateDestination(cs, cd); err != nil {
				return fmt.Errorf("cloudflare/ipvs: dest %v:%d of %v:%d: %w", d.Addr, d.Port, s.Addr, s.Port, err)
			}
		}
	}
	return nil
}

func (c *cloudflare) Read() (services, dests int, err error) {
	svcs, err := c.c.Services()
	if err != nil {
		return 0, 0, fmt.Errorf("cloudflare/ipvs: services: %w", err)
	}
	for _, s := range svcs {
		ds, err := c.c.Destinations(s.Service)
		if err != nil {
			return 0, 0, fmt.Errorf("cloudflare/ipvs: dests of %v:%d: %w", s.Address, s.Port, err)
		}
		dests += len(ds)
	}
	return len(svcs), dests, nil
}
