// Package netns runs code in a named network namespace (/run/netns/NAME, as `ip netns`
// makes them): the demo and the end-to-end tests make listeners and connections inside the
// namespaces that stand for nodes and pods.
package netns
