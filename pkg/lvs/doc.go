// Package lvs is the vocabulary of the kernel's IPVS (Linux Virtual Server) shared by every
// kubelvs package: address families, protocols, service flags, forwarding methods, tunnels, and
// the configuration of services and destinations as plain comparable values with the kernel's
// numeric codes.
//
// It has no netlink or Kubernetes dependency. pkg/desired computes []Service and []Destination in
// these terms, pkg/ipvs programs and reads them, and the node agent hands one to the other without
// translating. Names follow the kubelvs API (Masquerade, DirectRouting, Tunnel; TCP, UDP, SCTP).
package lvs
