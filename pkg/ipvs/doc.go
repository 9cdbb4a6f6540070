// Package ipvs programs and reads the Linux kernel's IP Virtual Server (IPVS) tables over the
// "IPVS" generic netlink family, declared with [github.com/kubelvs/kubelvs/pkg/gnl].
//
// It covers what the kernel offers: IPv4 and IPv6 services on TCP, UDP and SCTP or on a firewall
// mark, every scheduler by name with its flags, persistence (timeout, netmask, engine),
// destinations with every forwarding method, weights, thresholds, tunnel types (IPIP, GUE, GRE)
// and mixed-family tunnelled destinations, 32- and 64-bit statistics, global timeouts, the
// connection-sync daemons, flush and zero.
//
// A [Client] does one operation per call; [Client.Apply] pipelines many operations (the node
// agent programs thousands of services this way) and [Client.Table] reads the whole table with
// one service dump and one destination dump per service (the kernel runs one dump per socket at
// a time, so these go back to back, two system calls each: gnl reads a dump's data and its end
// in one recvmmsg). Writes take the configuration in [github.com/kubelvs/kubelvs/pkg/lvs]'s
// terms, as pkg/desired computes it; reads return it with the kernel's counters beside it, so
// desired and actual tables compare directly. The wire structs stay private.
//
// Every error is an [*OpError] that reads once ("ipvs: add service TCP 10.0.0.1:80: service
// exists (file exists)"), keeps the kernel's errno and extended-acknowledgement message, and
// matches the package's sentinels with errors.Is: [ErrServiceExists], [ErrServiceNotFound],
// [ErrDestExists], [ErrDestNotFound], [ErrSchedulerNotFound], [ErrInvalid], [ErrNotAvailable],
// [ErrNotSent]. The kernel answers ENOENT both for a scheduler (or persistence engine) module it
// cannot load and for a missing destination; the operation tells them apart.
package ipvs
