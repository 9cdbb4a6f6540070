package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubelvs/kubelvs/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(func(e *testenv.Env) int { env = e; return m.Run() }))
}

// vsBase is a valid VirtualService spec; cases replace parts of it.
const vsBase = `
addresses: ["10.0.0.1"]
ports: [{port: 80, protocol: TCP}]
backendRefs: [{name: web}]
`

// validationCase is one manifest and the API server's exact answer: "" for acceptance, else
// the field errors after `<Kind>.kubelvs.io "<name>" is invalid: ` (several errors are listed
// in brackets; when the schema itself is violated the server adds that it skipped the CEL
// rules).
type validationCase struct {
	name string
	kind string // VirtualService when empty
	spec string // YAML of .spec
	want string
}

func ports(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "{port: %d, protocol: TCP}", 1000+i)
	}
	return b.String() + "]"
}

func refs(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "{name: s%d}", i)
	}
	return b.String() + "]"
}

var validationCases = []validationCase{
	// Accepted manifests.
	{name: "minimal IPv4", spec: vsBase},
	{name: "dual-stack", spec: `{addresses: ["10.0.0.1", "2001:db8::1"], ports: [{port: 443, protocol: TCP}], backendRefs: [{name: web}]}`},
	{name: "firewall mark with a pool", spec: `{firewallMark: 16, backendRefs: [{kind: BackendPool, name: ext}]}`},
	{name: "firewall mark with a Service port", spec: `{firewallMark: 4294967295, backendRefs: [{name: web, port: 80}]}`},
	{name: "everything set", spec: `
addresses: ["192.0.2.10"]
ports: [{name: http, port: 80, protocol: TCP}, {port: 80, protocol: UDP}, {port: 9, protocol: SCTP}]
backendRefs: [{kind: Service, name: web, port: 8080, weight: 256}, {name: api, weight: 0}]
scheduler: Maglev
schedulerFlags: [Fallback, Port]
forwarding: {method: Tunnel, tunnel: {type: GUE, port: 6080, checksum: RemoteChecksum}}
sessionAffinity: {type: ClientIP, clientIP: {timeoutSeconds: 86400, ipv4PrefixLength: 24, ipv6PrefixLength: 64}}
trafficPolicy: Local
nodeSelector: {matchLabels: {lb: "true"}}
drain: {timeoutSeconds: 0}
`},
	{name: "UDP one-packet scheduling", spec: `{addresses: ["10.0.0.53"], ports: [{port: 53, protocol: UDP}], backendRefs: [{name: dns}], onePacketScheduling: true}`},
	{name: "IPIP and GRE tunnels", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}], forwarding: {method: Tunnel, tunnel: {type: GRE, checksum: Checksum}}}`},
	{name: "64 ports", spec: `{addresses: ["10.0.0.1"], backendRefs: [{name: w}], ports: ` + ports(64) + `}`},
	{name: "16 backendRefs", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: ` + refs(16) + `}`},
	{name: "same name as Service and BackendPool", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}, {kind: BackendPool, name: w}]}`},
	{name: "DirectRouting", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}], forwarding: {method: DirectRouting}}`},

	// Addresses.
	{name: "bad IP", spec: `{addresses: ["300.1.1.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "300.1.1.1": must be a valid IP address`},
	{name: "non-canonical IPv6", spec: `{addresses: ["2001:db8:0::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "2001:db8:0::1": must be an IP address in canonical form`},
	{name: "upper-case IPv6", spec: `{addresses: ["2001:DB8::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "2001:DB8::1": must be an IP address in canonical form`},
	{name: "two IPv4 addresses", spec: `{addresses: ["10.0.0.1", "10.0.0.2"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses: Invalid value: must contain at most one address per IP family`},
	// Address classes: every class a node cannot route, and its neighbours that it can.
	{name: "address 0.0.0.0", spec: `{addresses: ["0.0.0.0"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "0.0.0.0": must not be the unspecified address`},
	{name: "address ::", spec: `{addresses: ["::"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "::": must not be the unspecified address`},
	{name: "address 0.0.0.1", spec: `{addresses: ["0.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 127.0.0.1", spec: `{addresses: ["127.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "127.0.0.1": must not be a loopback address`},
	{name: "address 127.255.255.254", spec: `{addresses: ["127.255.255.254"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "127.255.255.254": must not be a loopback address`},
	{name: "address ::1", spec: `{addresses: ["::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "::1": must not be a loopback address`},
	{name: "address 128.0.0.1", spec: `{addresses: ["128.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address ::2", spec: `{addresses: ["::2"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 169.254.0.1", spec: `{addresses: ["169.254.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "169.254.0.1": must not be a link-local address`},
	{name: "address 169.254.255.254", spec: `{addresses: ["169.254.255.254"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "169.254.255.254": must not be a link-local address`},
	{name: "address 169.253.255.255", spec: `{addresses: ["169.253.255.255"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 169.255.0.1", spec: `{addresses: ["169.255.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address fe80::1", spec: `{addresses: ["fe80::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "fe80::1": must not be a link-local address`},
	{name: "address febf::1", spec: `{addresses: ["febf::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "febf::1": must not be a link-local address`},
	{name: "address fec0::1", spec: `{addresses: ["fec0::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 224.0.0.5", spec: `{addresses: ["224.0.0.5"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "224.0.0.5": must not be a multicast or broadcast address`},
	{name: "address 224.0.1.1", spec: `{addresses: ["224.0.1.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "224.0.1.1": must not be a multicast or broadcast address`},
	{name: "address 239.255.255.255", spec: `{addresses: ["239.255.255.255"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "239.255.255.255": must not be a multicast or broadcast address`},
	{name: "address 223.255.255.255", spec: `{addresses: ["223.255.255.255"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 240.0.0.1", spec: `{addresses: ["240.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address ff02::1", spec: `{addresses: ["ff02::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "ff02::1": must not be a multicast or broadcast address`},
	{name: "address ff05::1:3", spec: `{addresses: ["ff05::1:3"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "ff05::1:3": must not be a multicast or broadcast address`},
	{name: "address feff::1", spec: `{addresses: ["feff::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 255.255.255.255", spec: `{addresses: ["255.255.255.255"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[0]: Invalid value: "255.255.255.255": must not be a multicast or broadcast address`},
	{name: "address 255.255.255.254", spec: `{addresses: ["255.255.255.254"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 10.0.0.0", spec: `{addresses: ["10.0.0.0"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 192.168.1.1", spec: `{addresses: ["192.168.1.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 100.64.0.1", spec: `{addresses: ["100.64.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address fd00::1", spec: `{addresses: ["fd00::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "address 2001:db8::1", spec: `{addresses: ["2001:db8::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`},
	{name: "dual-stack with a multicast IPv6 address", spec: `{addresses: ["10.0.0.1", "ff0e::1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.addresses[1]: Invalid value: "ff0e::1": must not be a multicast or broadcast address`},
	{name: "three addresses", spec: `{addresses: ["10.0.0.1", "2001:db8::1", "10.0.0.3"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `[spec.addresses: Too many: 3: must have at most 2 items, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "repeated address", spec: `{addresses: ["10.0.0.1", "10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `[spec.addresses[1]: Duplicate value: "10.0.0.1", spec.addresses: Invalid value: must contain at most one address per IP family]`},
	{name: "neither addresses nor firewallMark", spec: `{ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec: Invalid value: exactly one of addresses and firewallMark must be set`},
	{name: "addresses and firewallMark", spec: `{addresses: ["10.0.0.1"], firewallMark: 1, ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `[spec: Invalid value: exactly one of addresses and firewallMark must be set, spec: Invalid value: ports must not be set with firewallMark, spec: Invalid value: backendRefs to Services must set port when firewallMark is used]`},

	// Ports.
	{name: "port 0", spec: `{addresses: ["10.0.0.1"], ports: [{port: 0, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.ports[0].port: Invalid value: 0: spec.ports[0].port in body should be greater than or equal to 1`},
	{name: "port 65536", spec: `{addresses: ["10.0.0.1"], ports: [{port: 65536, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.ports[0].port: Invalid value: 65536: spec.ports[0].port in body should be less than or equal to 65535`},
	{name: "repeated port and protocol", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}, {port: 80, protocol: TCP}], backendRefs: [{name: w}]}`,
		want: `spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}`},
	{name: "unknown protocol", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: ICMP}], backendRefs: [{name: w}]}`,
		want: `[spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "protocol missing", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80}], backendRefs: [{name: w}]}`,
		want: `[spec.ports[0].protocol: Required value, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "65 ports", spec: `{addresses: ["10.0.0.1"], backendRefs: [{name: w}], ports: ` + ports(65) + `}`,
		want: `[spec.ports: Too many: 65: must have at most 64 items, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "addresses without ports", spec: `{addresses: ["10.0.0.1"], backendRefs: [{name: w}]}`,
		want: `spec: Invalid value: ports are required with addresses`},
	{name: "firewallMark with ports", spec: `{firewallMark: 7, ports: [{port: 80, protocol: TCP}], backendRefs: [{kind: BackendPool, name: w}]}`,
		want: `spec: Invalid value: ports must not be set with firewallMark`},
	{name: "firewallMark 0", spec: `{firewallMark: 0, backendRefs: [{kind: BackendPool, name: w}]}`,
		want: `spec.firewallMark: Invalid value: 0: spec.firewallMark in body should be greater than or equal to 1`},
	{name: "firewallMark beyond 32 bits", spec: `{firewallMark: 4294967296, backendRefs: [{kind: BackendPool, name: w}]}`,
		want: `spec.firewallMark: Invalid value: 4294967296: spec.firewallMark in body should be less than or equal to 4294967295`},
	{name: "firewallMark and a Service without port", spec: `{firewallMark: 9, backendRefs: [{name: w}]}`,
		want: `spec: Invalid value: backendRefs to Services must set port when firewallMark is used`},

	// Scheduler.
	{name: "unknown scheduler", spec: vsBase + `scheduler: Random`,
		want: `[spec.scheduler: Unsupported value: "Random": supported values: "RoundRobin", "WeightedRoundRobin", "LeastConnection", "WeightedLeastConnection", "LocalityBasedLeastConnection", "LocalityBasedLeastConnectionWithReplication", "DestinationHashing", "SourceHashing", "Maglev", "WeightedFailover", "WeightedOverflow", "ShortestExpectedDelay", "NeverQueue", "TwoRandomChoices", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "kernel scheduler name", spec: vsBase + `scheduler: wrr`,
		want: `[spec.scheduler: Unsupported value: "wrr": supported values: "RoundRobin", "WeightedRoundRobin", "LeastConnection", "WeightedLeastConnection", "LocalityBasedLeastConnection", "LocalityBasedLeastConnectionWithReplication", "DestinationHashing", "SourceHashing", "Maglev", "WeightedFailover", "WeightedOverflow", "ShortestExpectedDelay", "NeverQueue", "TwoRandomChoices", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "flags with a scheduler that has none", spec: vsBase + "scheduler: WeightedRoundRobin\nschedulerFlags: [Fallback]",
		want: `spec: Invalid value: schedulerFlags require the SourceHashing or Maglev scheduler`},
	{name: "flags without a scheduler", spec: vsBase + `schedulerFlags: [Port]`,
		want: `spec: Invalid value: schedulerFlags require the SourceHashing or Maglev scheduler`},
	{name: "unknown scheduler flag", spec: vsBase + "scheduler: SourceHashing\nschedulerFlags: [Sticky]",
		want: `[spec.schedulerFlags[0]: Unsupported value: "Sticky": supported values: "Fallback", "Port", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "one-packet scheduling on TCP", spec: vsBase + `onePacketScheduling: true`,
		want: `spec: Invalid value: onePacketScheduling requires every port to be UDP`},

	// Forwarding.
	{name: "tunnel port without GUE", spec: vsBase + `forwarding: {method: Tunnel, tunnel: {type: IPIP, port: 5555}}`,
		want: `spec.forwarding.tunnel: Invalid value: port is only valid for GUE tunnels`},
	{name: "GUE without port", spec: vsBase + `forwarding: {method: Tunnel, tunnel: {type: GUE}}`,
		want: `spec.forwarding.tunnel: Invalid value: port is required for GUE tunnels`},
	{name: "tunnel settings with Masquerade", spec: vsBase + `forwarding: {method: Masquerade, tunnel: {type: IPIP}}`,
		want: `spec.forwarding: Invalid value: tunnel is only valid when method is Tunnel`},
	{name: "Tunnel without tunnel settings", spec: vsBase + `forwarding: {method: Tunnel}`,
		want: `spec.forwarding: Invalid value: tunnel is required when method is Tunnel`},
	{name: "checksum on IPIP", spec: vsBase + `forwarding: {method: Tunnel, tunnel: {type: IPIP, checksum: Checksum}}`,
		want: `spec.forwarding.tunnel: Invalid value: checksum is only valid for GUE and GRE tunnels`},
	{name: "unknown forwarding method", spec: vsBase + `forwarding: {method: NAT}`,
		want: `[spec.forwarding.method: Unsupported value: "NAT": supported values: "Masquerade", "DirectRouting", "Tunnel", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},

	// Backends.
	{name: "negative weight", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w, weight: -1}]}`,
		want: `spec.backendRefs[0].weight: Invalid value: -1: spec.backendRefs[0].weight in body should be greater than or equal to 0`},
	{name: "weight 257", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w, weight: 257}]}`,
		want: `spec.backendRefs[0].weight: Invalid value: 257: spec.backendRefs[0].weight in body should be less than or equal to 256`},
	{name: "repeated backendRef (kind defaults to Service)", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w}, {kind: Service, name: w, port: 81}]}`,
		want: `spec.backendRefs: Invalid value: must not repeat a kind and name`},
	{name: "no backendRefs", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: []}`,
		want: `spec.backendRefs: Invalid value: 0: spec.backendRefs in body should have at least 1 items`},
	{name: "backendRefs missing", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}]}`,
		want: `[spec.backendRefs: Required value, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "17 backendRefs", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: ` + refs(17) + `}`,
		want: `[spec.backendRefs: Too many: 17: must have at most 16 items, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "backendRef to a Pod", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{kind: Pod, name: w}]}`,
		want: `[spec.backendRefs[0].kind: Unsupported value: "Pod": supported values: "Service", "BackendPool", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},
	{name: "backendRef port 0", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{name: w, port: 0}]}`,
		want: `spec.backendRefs[0].port: Invalid value: 0: spec.backendRefs[0].port in body should be greater than or equal to 1`},
	{name: "Local traffic with a BackendPool", spec: `{addresses: ["10.0.0.1"], ports: [{port: 80, protocol: TCP}], backendRefs: [{kind: BackendPool, name: w}], trafficPolicy: Local}`,
		want: `spec: Invalid value: trafficPolicy Local applies only to Service backends`},
	{name: "unknown traffic policy", spec: vsBase + `trafficPolicy: Node`,
		want: `[spec.trafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]`},

	// Affinity and drain.
	{name: "clientIP settings without ClientIP", spec: vsBase + `sessionAffinity: {type: None, clientIP: {timeoutSeconds: 5}}`,
		want: `spec.sessionAffinity: Invalid value: clientIP is only valid when type is ClientIP`},
	{name: "affinity timeout 0", spec: vsBase + `sessionAffinity: {type: ClientIP, clientIP: {timeoutSeconds: 0}}`,
		want: `spec.sessionAffinity.clientIP.timeoutSeconds: Invalid value: 0: spec.sessionAffinity.clientIP.timeoutSeconds in body should be greater than or equal to 1`},
	{name: "IPv4 prefix 33", spec: vsBase + `sessionAffinity: {type: ClientIP, clientIP: {ipv4PrefixLength: 33}}`,
		want: `spec.sessionAffinity.clientIP.ipv4PrefixLength: Invalid value: 33: spec.sessionAffinity.clientIP.ipv4PrefixLength in body should be less than or equal to 32`},
	{name: "negative drain timeout", spec: vsBase + `drain: {timeoutSeconds: -1}`,
		want: `spec.drain.timeoutSeconds: Invalid value: -1: spec.drain.timeoutSeconds in body should be greater than or equal to 0`},

	// BackendPool.
	{name: "pool", kind: "BackendPool", spec: `{servers: [{address: "192.0.2.1"}, {address: "192.0.2.1", port: 8080, weight: 0, enabled: false, upperThreshold: 100, lowerThreshold: 10}, {address: "2001:db8::5"}]}`},
	{name: "pool bad address", kind: "BackendPool", spec: `{servers: [{address: "example.com"}]}`,
		want: `spec.servers[0].address: Invalid value: "example.com": must be a valid IP address`},
	{name: "pool non-canonical address", kind: "BackendPool", spec: `{servers: [{address: "2001:DB8::5"}]}`,
		want: `spec.servers[0].address: Invalid value: "2001:DB8::5": must be an IP address in canonical form`},
	// Pool server address classes, the same rules.
	{name: "pool server 0.0.0.0", kind: "BackendPool", spec: `{servers: [{address: "0.0.0.0"}]}`,
		want: `spec.servers[0].address: Invalid value: "0.0.0.0": must not be the unspecified address`},
	{name: "pool server ::", kind: "BackendPool", spec: `{servers: [{address: "::"}]}`,
		want: `spec.servers[0].address: Invalid value: "::": must not be the unspecified address`},
	{name: "pool server 0.0.0.1", kind: "BackendPool", spec: `{servers: [{address: "0.0.0.1"}]}`},
	{name: "pool server 127.0.0.1", kind: "BackendPool", spec: `{servers: [{address: "127.0.0.1"}]}`,
		want: `spec.servers[0].address: Invalid value: "127.0.0.1": must not be a loopback address`},
	{name: "pool server 127.255.255.254", kind: "BackendPool", spec: `{servers: [{address: "127.255.255.254"}]}`,
		want: `spec.servers[0].address: Invalid value: "127.255.255.254": must not be a loopback address`},
	{name: "pool server ::1", kind: "BackendPool", spec: `{servers: [{address: "::1"}]}`,
		want: `spec.servers[0].address: Invalid value: "::1": must not be a loopback address`},
	{name: "pool server 128.0.0.1", kind: "BackendPool", spec: `{servers: [{address: "128.0.0.1"}]}`},
	{name: "pool server ::2", kind: "BackendPool", spec: `{servers: [{address: "::2"}]}`},
	{name: "pool server 169.254.0.1", kind: "BackendPool", spec: `{servers: [{address: "169.254.0.1"}]}`,
		want: `spec.servers[0].address: Invalid value: "169.254.0.1": must not be a link-local address`},
	{name: "pool server 169.254.255.254", kind: "BackendPool", spec: `{servers: [{address: "169.254.255.254"}]}`,
		want: `spec.servers[0].address: Invalid value: "169.254.255.254": must not be a link-local address`},
	{name: "pool server 169.253.255.255", kind: "BackendPool", spec: `{servers: [{address: "169.253.255.255"}]}`},
	{name: "pool server 169.255.0.1", kind: "BackendPool", spec: `{servers: [{address: "169.255.0.1"}]}`},
	{name: "pool server fe80::1", kind: "BackendPool", spec: `{servers: [{address: "fe80::1"}]}`,
		want: `spec.servers[0].address: Invalid value: "fe80::1": must not be a link-local address`},
	{name: "pool server febf::1", kind: "BackendPool", spec: `{servers: [{address: "febf::1"}]}`,
		want: `spec.servers[0].address: Invalid value: "febf::1": must not be a link-local address`},
	{name: "pool server fec0::1", kind: "BackendPool", spec: `{servers: [{address: "fec0::1"}]}`},
	{name: "pool server 224.0.0.5", kind: "BackendPool", spec: `{servers: [{address: "224.0.0.5"}]}`,
		want: `spec.servers[0].address: Invalid value: "224.0.0.5": must not be a multicast or broadcast address`},
	{name: "pool server 224.0.1.1", kind: "BackendPool", spec: `{servers: [{address: "224.0.1.1"}]}`,
		want: `spec.servers[0].address: Invalid value: "224.0.1.1": must not be a multicast or broadcast address`},
	{name: "pool server 239.255.255.255", kind: "BackendPool", spec: `{servers: [{address: "239.255.255.255"}]}`,
		want: `spec.servers[0].address: Invalid value: "239.255.255.255": must not be a multicast or broadcast address`},
	{name: "pool server 223.255.255.255", kind: "BackendPool", spec: `{servers: [{address: "223.255.255.255"}]}`},
	{name: "pool server 240.0.0.1", kind: "BackendPool", spec: `{servers: [{address: "240.0.0.1"}]}`},
	{name: "pool server ff02::1", kind: "BackendPool", spec: `{servers: [{address: "ff02::1"}]}`,
		want: `spec.servers[0].address: Invalid value: "ff02::1": must not be a multicast or broadcast address`},
	{name: "pool server ff05::1:3", kind: "BackendPool", spec: `{servers: [{address: "ff05::1:3"}]}`,
		want: `spec.servers[0].address: Invalid value: "ff05::1:3": must not be a multicast or broadcast address`},
	{name: "pool server feff::1", kind: "BackendPool", spec: `{servers: [{address: "feff::1"}]}`},
	{name: "pool server 255.255.255.255", kind: "BackendPool", spec: `{servers: [{address: "255.255.255.255"}]}`,
		want: `spec.servers[0].address: Invalid value: "255.255.255.255": must not be a multicast or broadcast address`},
	{name: "pool server 255.255.255.254", kind: "BackendPool", spec: `{servers: [{address: "255.255.255.254"}]}`},
	{name: "pool server 10.0.0.0", kind: "BackendPool", spec: `{servers: [{address: "10.0.0.0"}]}`},
	{name: "pool server 192.168.1.1", kind: "BackendPool", spec: `{servers: [{address: "192.168.1.1"}]}`},
	{name: "pool server 100.64.0.1", kind: "BackendPool", spec: `{servers: [{address: "100.64.0.1"}]}`},
	{name: "pool server fd00::1", kind: "BackendPool", spec: `{servers: [{address: "fd00::1"}]}`},
	{name: "pool server 2001:db8::1", kind: "BackendPool", spec: `{servers: [{address: "2001:db8::1"}]}`},
	{name: "pool with a multicast server among good ones", kind: "BackendPool", spec: `{servers: [{address: "192.0.2.1"}, {address: "239.1.2.3", port: 80}]}`,
		want: `spec.servers[1].address: Invalid value: "239.1.2.3": must not be a multicast or broadcast address`},
	{name: "pool repeated server", kind: "BackendPool", spec: `{servers: [{address: "192.0.2.1", port: 80}, {address: "192.0.2.1", port: 80}]}`,
		want: `spec.servers: Invalid value: must not repeat an address and port`},
	{name: "pool thresholds reversed", kind: "BackendPool", spec: `{servers: [{address: "192.0.2.1", upperThreshold: 10, lowerThreshold: 20}]}`,
		want: `spec.servers[0]: Invalid value: lowerThreshold must not exceed upperThreshold`},
	{name: "pool without servers", kind: "BackendPool", spec: `{servers: []}`,
		want: `spec.servers: Invalid value: 0: spec.servers in body should have at least 1 items`},
	{name: "pool negative weight", kind: "BackendPool", spec: `{servers: [{address: "192.0.2.1", weight: -5}]}`,
		want: `spec.servers[0].weight: Invalid value: -5: spec.servers[0].weight in body should be greater than or equal to 0`},
}

// TestValidation sends every manifest to the real API server (server-side dry run) and checks
// acceptance or the exact error.
func TestValidation(t *testing.T) {
	ctx := context.Background()
	for i, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			kind := tc.kind
			if kind == "" {
				kind = "VirtualService"
			}
			var spec map[string]any
			if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatalf("bad test manifest: %v", err)
			}
			name := fmt.Sprintf("case-%d", i)
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "kubelvs.io/v1alpha1", "kind": kind,
				"metadata": map[string]any{"name": name, "namespace": "default"},
				"spec":     spec,
			}}
			err := env.Client.Create(ctx, u, client.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want the manifest accepted, got: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("want the manifest rejected with %q, it was accepted", tc.want)
			case tc.want != "":
				want := fmt.Sprintf("%s.kubelvs.io %q is invalid: %s", kind, name, tc.want)
				if got := err.Error(); got != want {
					t.Errorf("wrong error\n got: %s\nwant: %s", got, want)
				}
			}
		})
	}
}

func TestValidationTableSize(t *testing.T) {
	if n := len(validationCases); n < 40 {
		t.Fatalf("the validation table has %d manifests; the issue asks for at least 40", n)
	}
}
