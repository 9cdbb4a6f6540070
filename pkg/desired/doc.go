// Package desired computes, without any I/O, the IPVS table one node should have from the
// cluster's VirtualServices, Services, EndpointSlices, BackendPools and the node's labels, and
// the node-independent verdict on each VirtualService (accepted or conflicting, references
// resolved, backend counts).
//
// The same functions serve the cluster controller (which writes status) and the node agent
// (which programs the kernel), so both always agree. The output is in pkg/lvs's terms: a
// [Service] embeds the lvs.Service and a [Destination] the lvs.Destination that pkg/ipvs
// programs as they are, so the agent passes &svc.Service and &dst.Destination on without
// translating.
//
// A [Model] indexes a [Cluster] and evaluates every VirtualService in [NewModel]; after that it
// is never modified, so one Model is safe for concurrent use by several goroutines (the
// objects it was built from must not change while it is in use).
//
// Each VirtualService spec is read in two steps: one step applies the defaults and yields the
// effective settings shown in status (they are shown even for an invalid spec), then small
// parsers, one per part of the spec, validate it and map it to kernel terms, each returning an
// error that becomes the Accepted condition's message.
//
// Rules, in the order they apply:
//   - A VirtualService is invalid (not accepted) when its spec breaks a rule of the API's
//     schema: the API server normally rejects such objects before they exist, but one that
//     bypassed validation (created before a rule existed, or written to etcd directly) must
//     not be programmed. That includes addresses no node can use: unspecified, loopback,
//     link-local, multicast and broadcast addresses, and backendRefs of an unknown kind.
//   - Conflicts: two VirtualServices that claim the same address:port/protocol (or firewall
//     mark) conflict. The oldest (creation time, then namespace/name) wins; a loser claims none
//     of its keys, so it blocks nobody else.
//   - Backends of each VirtualService port come from its backendRefs: for a Service, the
//     endpoints of its EndpointSlices on the target port behind the Service port (backendRef
//     port, else the VirtualService port); for a BackendPool, its servers. A pool server
//     whose address no node can use is left out, and ResolvedRefs says so.
//   - Per node: only VirtualServices whose nodeSelector matches the node's labels; with
//     trafficPolicy Local only endpoints on the node itself.
//   - Per IPVS service: destinations of the service's address family (any family with Tunnel
//     forwarding). Ready endpoints are active; when none is ready, serving terminating ones are
//     (the Kubernetes fallback). Other terminating endpoints and disabled pool servers stay as
//     draining destinations (weight 0) so their connections finish; the agent removes them after
//     the drain timeout or when they disappear. Not-ready, not-terminating endpoints are left
//     out.
//   - Weight: backendRef weight (default 1) times the pool server's weight (default 1). The
//     same address:port reached twice is one destination: active beats draining, then the
//     larger weight wins.
//   - DirectRouting and Tunnel cannot change the port: destinations use the service port.
package desired
