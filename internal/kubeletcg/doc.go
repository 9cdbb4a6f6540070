// Package kubeletcg makes pod cgroups the way the kubelet (systemd cgroup driver) and containerd
// lay them out, in the real cgroup2 filesystem, for the demo and the end-to-end tests that run
// `kubelvs agent` where no kubelet runs: a [Tree] of its own under the first cgroup2 mount
// (mounting cgroup2 where nothing has, as in hack/vm's busybox guest), a Burstable pod's
// container cgroups in it ([Tree.Container]), processes moved into them ([Join]) as a container
// runtime would, and everything removed again ([Tree.Close]). The agent gets [Tree.Root] as
// --cgroup-root, so pod taskstats finds the pods' processes as it does on a real node.
package kubeletcg
