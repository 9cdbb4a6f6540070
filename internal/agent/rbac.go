package agent

// The agent's permissions (controller-gen writes config/agent/role.yaml from these markers):
// it reads what it programs from, writes only IPVSNodes and their status and its Lease, and
// checks the credentials of metrics scrapers, and records events about its dataplane. Pod taskstats reads its node's pods and patches
// their status (config/agent/pod-status-policy.yaml narrows that to its own node's pods and the
// kubelvs.io/TaskDelays condition).
//
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=patch
//
// +kubebuilder:rbac:groups=kubelvs.io,resources=virtualservices;backendpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubelvs.io,resources=ipvsnodes,verbs=get;create;patch
// +kubebuilder:rbac:groups=kubelvs.io,resources=ipvsnodes/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=kubelvs-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
