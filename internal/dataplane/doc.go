// Package dataplane is what the node agent changes on a node around IPVS, so that an IPVS
// table carries traffic without exposing the host: the VIPs as local routes (the node
// accepts their traffic, IPVS takes it in LOCAL_IN), and one nftables table (inet kubelvs)
// that drops traffic to a VIP on a port and protocol no IPVS service serves and source-NATs
// masqueraded connections whose replies would not come back through the node.
//
// The pure core is [Index] (which VIPs and VIP:port/protocol pairs the node's services need,
// kept incrementally, and the ranges of destinations not masqueraded, from [NoMasqBounds]:
// masquerading is decided by the destination's address against the node's prefixes, so it
// costs no element per backend) and [Diff] (what to add and
// remove). The edges are thin: link.go (rtnetlink: the interface and the VIP routes) and
// nft.go (github.com/google/nftables: the table, its sets and their elements). [Dataplane]
// drives them and is what the agent calls through its small consumer interface.
//
// Ownership, so that nothing kubelvs did not create is touched:
//   - VIP routes: type local in the table local, through the interface given
//     (--vip-interface, default lo), of protocol [RouteProtocol] ("ip route show table local
//     proto 107"); every other route is left alone. A VIP that is local already (someone
//     else's address or route) is not routed and not counted.
//   - The interface: lo (or any loopback) is used as it is; another name is a link of kind
//     dummy with the alias [LinkAlias], created when missing. A link of that name that is
//     neither is someone else's: the agent routes nothing and reports it.
//   - Addresses: none. VIP addresses earlier agents bound (marked with [AddrMarker]) become
//     routes at start, each routed before its address goes.
//   - nftables: only the table inet kubelvs, changed in one transaction per change (one
//     netlink batch: it applies whole or not at all); set elements are added and removed
//     one by one, the rules are written once.
//
// Everything is done in the network namespace given by Config.NetNS (the agent's --netns).
package dataplane
