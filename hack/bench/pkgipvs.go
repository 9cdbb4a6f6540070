package main

// TODO(pkg/ipvs): the kubelvs contender goes here once pkg/ipvs exists. It needs only:
//
//	type pkgIPVS struct{ c *ipvs.Client }
//	func newPkgIPVS(o options) (contender, error) { ... ipvs.New(...) ... }
//	func (p *pkgIPVS) Program(t *Table) error { ... one Batch of every service and dest create ... }
//	func (p *pkgIPVS) Read() (int, int, error) { ... Table(ctx), count services and dests ... }
//
// plus {pkgIPVSName, newPkgIPVS} at the top of the contenders list in contenders.go. This module
// replaces github.com/kubelvs/kubelvs with ../.. so it builds against the working tree.
