// Package vm holds the tests of the hack/vm harness's shell scripts (run.sh boots Debian's kernel
// under qemu for the tests that need IPVS; accel.sh chooses qemu's accelerator). It has no code
// of its own: the tests run the scripts with fake qemu binaries and devices.
package vm
