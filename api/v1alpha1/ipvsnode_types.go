package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeVirtualServiceState is how far one node got with one VirtualService.
// +kubebuilder:validation:Enum=Programmed;Pending;Failed;Draining
type NodeVirtualServiceState string

// Node virtual service states.
const (
	// StateProgrammed: the node's IPVS table matches the observed generation.
	StateProgrammed NodeVirtualServiceState = "Programmed"
	// StatePending: the agent has not yet programmed the observed generation.
	StatePending NodeVirtualServiceState = "Pending"
	// StateFailed: programming the observed generation failed (see reason and message).
	StateFailed NodeVirtualServiceState = "Failed"
	// StateDraining: the VirtualService no longer applies to the node; its real servers are
	// being drained before removal.
	StateDraining NodeVirtualServiceState = "Draining"
)

// RealServerCounts counts a node's real servers of one VirtualService.
type RealServerCounts struct {
	// Active real servers have a non-zero weight.
	Active int32 `json:"active"`
	// Draining real servers have weight 0 and wait for their connections to end.
	Draining int32 `json:"draining"`
}

// NodeVirtualService is one VirtualService as one node's agent sees it.
type NodeVirtualService struct {
	// Namespace of the VirtualService.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the VirtualService.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// ObservedGeneration is the VirtualService generation the state refers to.
	// +required
	ObservedGeneration int64 `json:"observedGeneration"`
	// State is Programmed, Pending, Failed or Draining.
	// +required
	State NodeVirtualServiceState `json:"state"`
	// Reason is a CamelCase word explaining the state.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`
	// Message explains the state to humans.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// RealServers counts this node's real servers of the VirtualService.
	// +optional
	RealServers *RealServerCounts `json:"realServers,omitempty"`
}

// AgentInfo describes the node agent.
type AgentInfo struct {
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName,omitempty"`
}

// KernelInfo describes the node's kernel IPVS.
type KernelInfo struct {
	// Release is the kernel release (uname -r).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Release string `json:"release,omitempty"`
	// IPVSVersion is the version the IPVS family reports.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	IPVSVersion string `json:"ipvsVersion,omitempty"`
	// ConnectionTableSize is the IPVS connection hash table size.
	// +optional
	ConnectionTableSize int32 `json:"connectionTableSize,omitempty"`
	// Sysctls are the IPVS sysctls the agent manages, as it read them back after setting them
	// (for example net.ipv4.vs.expire_nodest_conn).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Sysctls []Sysctl `json:"sysctls,omitempty"`
	// Schedulers the kernel can load.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=16
	Schedulers []string `json:"schedulers,omitempty"`
}

// Sysctl is one kernel setting and its value.
type Sysctl struct {
	// Name in dotted form (net.ipv4.vs.conntrack).
	// +required
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// Value as the kernel shows it, or "unset: <reason>" when the agent could not set it.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value"`
}

// DataplaneInfo describes what the agent set up on the node around IPVS: the interface its
// VIPs' local routes go through, the ARP sysctls, the nftables table that filters and
// masquerades.
type DataplaneInfo struct {
	// VIPInterface is the interface the node's VIPs are routed through, as local routes of
	// the table local ("lo", or a dummy interface the agent made); empty when the agent routes
	// none (--vip-interface="").
	// +optional
	// +kubebuilder:validation:MaxLength=15
	VIPInterface string `json:"vipInterface,omitempty"`
	// BoundVIPs counts the VIPs the agent routes through VIPInterface.
	// +optional
	BoundVIPs int32 `json:"boundVIPs,omitempty"`
	// Table is the nftables table the agent owns ("inet kubelvs"); empty when none.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Table string `json:"table,omitempty"`
	// Masquerade is the source NAT mode of masqueraded (NAT) destinations: all, remote or none.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Masquerade string `json:"masquerade,omitempty"`
	// Sysctls are the dataplane's sysctls (ARP), as read back after setting them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Sysctls []Sysctl `json:"sysctls,omitempty"`
}

// IPVSCounts counts what a node programmed.
type IPVSCounts struct {
	VirtualServices int32 `json:"virtualServices"`
	Services        int32 `json:"services"`
	Destinations    int32 `json:"destinations"`
}

// IPVSNodeStatus is written only by the node's agent.
type IPVSNodeStatus struct {
	// Conditions: Ready, IPVSAvailable, ConflictFree, DataplaneReady.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Agent describes the agent.
	// +optional
	Agent *AgentInfo `json:"agent,omitempty"`

	// Kernel describes the kernel.
	// +optional
	Kernel *KernelInfo `json:"kernel,omitempty"`

	// Counts of what the node programmed.
	// +optional
	Counts *IPVSCounts `json:"counts,omitempty"`

	// Dataplane describes the node's VIP interface, ARP sysctls and nftables table.
	// +optional
	Dataplane *DataplaneInfo `json:"dataplane,omitempty"`

	// VirtualServices has one entry per VirtualService selected for the node (or draining
	// from it), sorted by namespace and name. Only the agent writes it, whole (an atomic
	// list: server-side apply then records one field, not one per entry, which would double
	// the object's size), and a Programmed entry has no reason or message, so that a node
	// with 10,000 VirtualServices stays well inside etcd's object size limit (1.5 MiB).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16384
	VirtualServices []NodeVirtualService `json:"virtualServices,omitempty"`
}

// IPVSNode is one node's IPVS state, named after the node, owner-referenced to the Node and
// written only by that node's agent.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=kubelvs
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="IPVS",type=string,JSONPath=`.status.conditions[?(@.type=="IPVSAvailable")].status`
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.counts.services`
// +kubebuilder:printcolumn:name="Destinations",type=integer,JSONPath=`.status.counts.destinations`
// +kubebuilder:printcolumn:name="Kernel",type=string,JSONPath=`.status.kernel.release`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPVSNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status IPVSNodeStatus `json:"status,omitempty"`
}

// IPVSNodeList is a list of IPVSNodes.
//
// +kubebuilder:object:root=true
type IPVSNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPVSNode `json:"items"`
}
