// Package vswatch lists and watches VirtualServices for the node agent's cache with a cheaper
// decoder of their watch than client-go's (BenchmarkVirtualServiceWatchDecode: about half the
// time and 45 % of the allocations per event).
//
// VirtualServices are a custom resource, which the API server serves as JSON only, and at
// 10,000 of them their decoding was the largest part of the agent's CPU from an empty node
// (65 % in the emulated VM): client-go scans every event's bytes about ten times (the
// framer; the envelope's kind sniff, validation and decode; then the same for the object,
// which has to be sniffed because the watch decodes it without a target type). The watch is
// always of VirtualServices, so an event in the server's own shape
// ({"type":...,"object":{"apiVersion":"kubelvs.io/v1alpha1","kind":"VirtualService",...}})
// takes a short path: the envelope is cut at its known keys, the object validated once and
// decoded once, as client-go decodes it (case-sensitive keys, unknown ones ignored, no
// defaulting or conversion) except that its managed fields and status are stepped over, not
// decoded: the agent's cache drops both. Anything else (an ERROR event's Status, other key orders, a
// list, a malformed event) goes to client-go's decoder as before, which also writes the
// errors.
package vswatch
