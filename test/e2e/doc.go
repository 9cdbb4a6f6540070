// Package e2e holds the end-to-end tests of kubelvs (build tag ipvsvm): they run inside the
// hack/vm VM (Debian's kernel, real IPVS) with the real kubelvs binary, against the envtest API
// server on the host reached through qemu's user-mode network (hack/vm/run-tests.sh
// -apiserver). Network namespaces in the guest stand in for nodes: one agent per namespace
// programs that namespace's IPVS table.
package e2e
