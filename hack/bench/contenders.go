package main

// contender is one way of programming the IPVS table and reading it back. Each runs in a process of its
// own in a fresh network namespace, so the kernel state it meets is empty and unpoisoned.
type contender interface {
	// Program writes every service and destination of t into the kernel's (empty) table.
	Program(t *Table) error
	// Read reads the whole table back and returns how many services and destinations it holds.
	Read() (services, dests int, err error)
}

// entry names a contender and how to make one.
type entry struct {
	name string
	new  func(o options) (contender, error)
}

// contenders, in the order they run and are printed. The name pkgIPVSName (if present) is the
// reference for the "vs pkg/ipvs" ratios, floorName for the "vs floor" ratios.
var contenders = []entry{
	{pkgIPVSName, newPkgIPVS},
	{"moby/ipvs", newMoby},
	{"cloudflare/ipvs", newCloudflare},
	{"ipvsadm -R / -Sn", newIpvsadm},
	{floorName, newRaw},
	{"raw, ACK each", newRawAckEach},
}

const (
	pkgIPVSName = "pkg/ipvs"
	floorName   = "floor (raw netlink)"
)
