package v1alpha1

// Condition types of VirtualService status, in the Gateway API style, plus the two kstatus
// (Flux, cli-utils) reads.
const (
	// ConditionAccepted is True when the VirtualService is valid and does not conflict with an
	// older VirtualService on an address:port/protocol or firewall mark.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs is True when every backendRef names an existing Service or
	// BackendPool (and, for Services, an existing port).
	ConditionResolvedRefs = "ResolvedRefs"
	// ConditionProgrammed is True when every selected node reports having programmed the
	// current generation.
	ConditionProgrammed = "Programmed"
	// ConditionReady is True when the VirtualService is accepted, its references resolve, it is
	// programmed on every selected node and it has at least one ready backend.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the current generation is still being programmed.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a change from a human: the object is invalid,
	// conflicts, references something missing, or a node failed to program it.
	ConditionStalled = "Stalled"
)

// Condition types of IPVSNode status.
const (
	// NodeConditionReady is True when the agent is running and its last sync succeeded.
	NodeConditionReady = "Ready"
	// NodeConditionIPVSAvailable is True when the node's kernel answers the IPVS family.
	NodeConditionIPVSAvailable = "IPVSAvailable"
	// NodeConditionConflictFree is True when no IPVS service the agent owns was changed by
	// another program (kube-proxy, keepalived, ...).
	NodeConditionConflictFree = "ConflictFree"
	// NodeConditionDataplaneReady is True when the node's VIP interface and nftables table
	// match what its IPVS services need.
	NodeConditionDataplaneReady = "DataplaneReady"
)

// Reasons used in conditions.
const (
	ReasonAccepted          = "Accepted"
	ReasonInvalid           = "Invalid"
	ReasonConflicted        = "Conflicted"
	ReasonResolvedRefs      = "ResolvedRefs"
	ReasonBackendNotFound   = "BackendNotFound"
	ReasonPortNotFound      = "PortNotFound"
	ReasonProgrammed        = "Programmed"
	ReasonPending           = "Pending"
	ReasonProgrammingFailed = "ProgrammingFailed"
	ReasonNoNodesSelected   = "NoNodesSelected"
	ReasonReady             = "Ready"
	ReasonNotAccepted       = "NotAccepted"
	ReasonRefsNotResolved   = "RefsNotResolved"
	ReasonNotProgrammed     = "NotProgrammed"
	ReasonNoReadyBackends   = "NoReadyBackends"
	ReasonReconciled        = "Reconciled"
	ReasonProgramming       = "Programming"
	ReasonValidServers      = "ValidServers"
	// ReasonInvalidBackend: a backend (a BackendPool server) has an address no node can use.
	ReasonInvalidBackend = "InvalidBackend"
)
