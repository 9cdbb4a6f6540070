// Package dataplane is what the node agent changes on a node around IPVS, so that an IPVS
// table carries traffic without exposing the host: the VIPs bound to a dummy interface it
// owns (kubelvs0), and one nftables table (inet kubelvs) that drops traffic to a VIP on a
// port and protocol no IPVS service serves and source-NATs masqueraded connections whose
// replies would not come back through the node.
//
// The pure core is [Index] (which VIPs, VIP:port/protocol pairs and masqueraded
// destinations the node's services need, kept incrementally) and [Diff] (what to add and
// remove). The edges are thin: link.go (rtnetlink: the interface and its addresses) and
// nft.go (github.com/google/nftables: the table, its sets and their elements). [Dataplane]
// drives them and is what the agent calls through its small consumer interface.
//
// Ownership, so that nothing kubelvs did not create is touched:
//   - The interface: a link of kind dummy, with the name given (--vip-interface) and the
//     alias [LinkAlias]. A link of that name that is not a dummy or lacks the alias is
//     someone else's: the agent binds nothing and reports it.
//   - Addresses: the agent's carry IFA_F_NOPREFIXROUTE and the route priority (metric)
//     [AddrMarker] ("ip addr" shows "metric 1802270323 noprefixroute"); every other
//     address on the interface is left alone and never counted as a VIP.
//   - nftables: only the table inet kubelvs, changed in one transaction per change (one
//     netlink batch: it applies whole or not at all); set elements are added and removed
//     one by one, the rules are written once.
//
// Everything is done in the network namespace given by Config.NetNS (the agent's --netns).
package dataplane
