// Package controllers holds the kubelvs reconcilers that run in the cluster controller
// (`kubelvs controller`): the VirtualService reconciler, which reports acceptance, resolved
// references, backend counts and per-node programming in status, and the BackendPool
// reconciler. What each VirtualService means is computed by package pkg/desired, the same code
// the node agent uses to program IPVS.
package controllers
