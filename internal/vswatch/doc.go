// Package vswatch lists and watches VirtualServices for the node agent's cache with a cheaper
// decoder of their watch than client-go's (BenchmarkVirtualServiceWatchDecode compares them
// on a real API server's events).
//
// VirtualServices are a custom resource, which the API server serves as JSON only, and at
// 10,000 of them their decoding was the largest part of the agent's CPU from an empty node
// (65 % in the emulated VM): client-go scans every event's bytes about ten times (the
// framer; the envelope's kind sniff, validation and decode; then the same for the object,
// which has to be sniffed because the watch decodes it without a target type). The watch is
// always of VirtualServices, and the server writes it one event per line:
//   - events are framed by line, each line validated once; a stream written otherwise goes to
//     client-go's framer from the first line that is not one value by itself;
//   - an event in the server's own shape
//     ({"type":...,"object":{"apiVersion":"kubelvs.io/v1alpha1","kind":"VirtualService",...}})
//     takes a short path: the envelope is cut at its known keys and the object decoded once,
//     as client-go decodes it (case-sensitive keys, unknown ones ignored, no defaulting or
//     conversion) except that its managed fields and status are stepped over, not decoded:
//     the agent's cache drops both;
//   - anything else (an ERROR event's Status, other key orders, a list, a malformed event)
//     goes to client-go's decoder as before, which also writes the errors.
package vswatch
