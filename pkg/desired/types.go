package desired

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Service is one IPVS virtual service a node should have: the kernel's configuration
// (lvs.Service, which pkg/ipvs programs as it is) and where it comes from.
type Service struct {
	lvs.Service

	// Owner is the VirtualService the service comes from, and Generation its generation.
	Owner      types.NamespacedName
	Generation int64
	// DrainTimeout is how long a destination that goes away keeps its connections (at weight
	// 0) before the agent removes it: the VirtualService's drain timeout.
	DrainTimeout time.Duration

	// Destinations, sorted by address then port.
	Destinations []Destination
}

// Destination is one real server of an IPVS service: the kernel's configuration
// (lvs.Destination) and its drain state, which only the agent acts on.
type Destination struct {
	lvs.Destination

	// Draining destinations have weight 0: they keep their connections, get no new ones, and
	// are removed after DrainTimeout (counted by the agent from when it first saw them
	// draining).
	Draining     bool
	DrainTimeout time.Duration
}

// Table is the IPVS table one node should have.
type Table struct {
	Node string
	// Services, sorted by key.
	Services []Service
	// VirtualServices selected for the node (accepted, matching its labels), sorted; the agent
	// reports one status entry per item.
	VirtualServices []Selected
}

// Selected is a VirtualService selected for a node.
type Selected struct {
	Key        types.NamespacedName
	Generation int64
	// Services is the number of IPVS services it yields on the node.
	Services int
}
