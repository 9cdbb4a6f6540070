// Package smoketest proves the hack/vm harness: its tests (build tag ipvsvm) run inside the VM that
// hack/vm/run-tests.sh boots and check that the guest kernel has IPVS, that ipvsadm works, that the
// kernel autoloads scheduler modules through /sbin/modprobe, that network namespaces isolate IPVS
// tables, and that veth/dummy interfaces can be created. It has no code of its own.
package smoketest
