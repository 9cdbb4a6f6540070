// Package agent is the node agent's reconciler: it keeps one node's kernel IPVS table equal to
// what pkg/desired computes for the node, with the fewest kernel operations, and without
// dropping a connection it does not have to drop.
//
// The core is pure and free of I/O: a [Model] of what the agent created and last programmed,
// [Plan] (the operations that take one VirtualService's services from the model to what is
// desired), [PlanDrain] (which draining destinations to remove, from one destination dump of
// their service) and [PlanAudit] (the repairs that bring the kernel's table back to the model).
// A [Step] is one kernel operation plus what the model records once the kernel accepted it.
//
// [Reconciler] drives the core against a [Kernel] (pkg/ipvs in production) and a checkpoint
// file (what the agent owns and when each drain started, so ownership and drains survive
// restarts). The Kubernetes side (caches, indexes, IPVSNode status) is in cluster.go and
// status.go; it tells the reconciler which VirtualServices changed and what they now want. The
// caches keep what the agent reads (trim.go) and its field indexes hold each value once
// (indexes.go): at 10,000 VirtualServices they are most of the agent's memory.
//
// Rules the reconciler keeps:
//   - Ownership: it changes and deletes only services it created (recorded in the checkpoint).
//     A service someone else made on a key it wants is a conflict, reported and left alone.
//   - Minimal writes: services and destinations are updated in place (never deleted and
//     re-added: the kernel's destination trash list makes re-adds slow); nothing is sent when
//     nothing differs; idle, it sends no netlink request at all between audits.
//   - Draining: a destination that is removed or terminating gets weight 0 and is deleted when
//     its active and inactive connections reach zero or its drain timeout passes; UDP
//     destinations (no connections to keep) and a drain timeout of 0 go at once. A
//     VirtualService that no longer applies drains the same way before its services go.
//
// A Reconciler is used from one goroutine; its Status and Snapshot methods may be called from
// others.
package agent
