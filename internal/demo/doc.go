// Package demo is the scenario of `make demo`: a two-node kubelvs cluster on one machine (two
// network namespaces with a `kubelvs agent` each, `kubelvs controller`, an API server without a
// kubelet), the config/samples applied, real HTTP backends in network namespaces registered as
// Pods and EndpointSlices, and then, step by step: the objects' printer columns, the IPVS table,
// the spread of real requests over the backends against their weights, a backend scaled away and
// drained under a running download, a backend pod starved of CPU and its kubelvs.io/TaskDelays
// condition beside a calm one's, and the agent's metrics. The pods' processes live in
// kubelet-like cgroups the demo makes with internal/kubeletcg, which the agents
// get as --cgroup-root.
//
// It runs where the kernel has IPVS (a host with it, or the hack/vm guest) and drives
// everything through the API server as the kubelet and the EndpointSlice controller would.
// [Demo.Run] returns what each step observed, so the ipvsvm test of this package asserts the
// same scenario the user watches.
package demo
