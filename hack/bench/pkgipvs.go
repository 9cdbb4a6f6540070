package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// pkgIPVS is kubelvs's own library: one Apply (pipelined batch) of every service and destination
// to program, Table to read.
type pkgIPVS struct {
	c   *ipvs.Client
	ctx context.Context
}

func newPkgIPVS(o options) (contender, error) {
	ctx := context.Background()
	c, err := ipvs.New(ctx, &ipvs.Config{Timeout: o.timeout, Window: o.window}) // the same window as the floor
	if err != nil {
		return nil, err
	}
	return &pkgIPVS{c: c, ctx: ctx}, nil
}

func (p *pkgIPVS) Program(t *Table) error {
	// The operations point into two slices, as an agent holding its desired table would.
	_, dests := t.Objects()
	svcs := make([]lvs.Service, len(t.Services))
	dsts := make([]lvs.Destination, 0, dests)
	ops := make([]ipvs.Op, 0, len(t.Services)+dests)
	for i, s := range t.Services {
		svc := &svcs[i]
		*svc = lvs.Service{ServiceKey: lvs.ServiceKey{Protocol: lvs.TCP, Address: s.Addr, Port: s.Port}, Scheduler: Scheduler}
		ops = append(ops, ipvs.Op{Kind: ipvs.AddService, Service: svc})
		for _, d := range s.Dests {
			dsts = append(dsts, lvs.Destination{Address: d.Addr, Port: d.Port, Weight: d.Weight, Forwarding: lvs.Masquerade})
			ops = append(ops, ipvs.Op{Kind: ipvs.AddDestination, Service: svc, Destination: &dsts[len(dsts)-1]})
		}
	}
	results, err := p.c.Apply(p.ctx, ops)
	if err != nil {
		return err
	}
	var errs []error
	for i, r := range results {
		if r != nil {
			errs = append(errs, fmt.Errorf("op %d: %w", i, r))
			if len(errs) == 5 {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (p *pkgIPVS) Read() (services, dests int, err error) {
	table, err := p.c.Table(p.ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range table {
		dests += len(e.Destinations)
	}
	return len(table), dests, nil
}
