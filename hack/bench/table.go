package main

import (
	"encoding/binary"
	"net/netip"
)

// Table is the IPVS table every contender programs: IPv4 TCP services with the rr scheduler, each with
// masquerade destinations of weight 1, as kube-proxy programs a ClusterIP service with its endpoints.
type Table struct {
	Services []Service
}

// Service is one virtual service and its destinations.
type Service struct {
	Addr  netip.Addr
	Port  uint16
	Dests []Dest
}

// Dest is one real server.
type Dest struct {
	Addr   netip.Addr
	Port   uint16
	Weight uint32
}

// Scheduler is the scheduler of every service in the table.
const Scheduler = "rr"

// NewTable returns services x dests: VIPs from 10.0.0.0 up, port 80; destinations from 100.64.0.0 up,
// distinct across the table (as pod IPs are), port 8080.
func NewTable(services, dests int) *Table {
	t := &Table{Services: make([]Service, services)}
	for i := range t.Services {
		s := &t.Services[i]
		s.Addr = v4(10<<24 + uint32(i))
		s.Port = 80
		s.Dests = make([]Dest, dests)
		for j := range s.Dests {
			s.Dests[j] = Dest{Addr: v4(100<<24 | 64<<16 + uint32(i*dests+j)), Port: 8080, Weight: 1}
		}
	}
	return t
}

// Objects is the number of services plus destinations: the number of writes to program the table.
func (t *Table) Objects() (services, dests int) {
	for _, s := range t.Services {
		dests += len(s.Dests)
	}
	return len(t.Services), dests
}

func v4(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}
