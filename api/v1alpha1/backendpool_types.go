package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RealServer is one static real server of a BackendPool.
// +kubebuilder:validation:XValidation:rule="!has(self.upperThreshold) || !has(self.lowerThreshold) || self.upperThreshold == 0 || self.lowerThreshold <= self.upperThreshold",message="lowerThreshold must not exceed upperThreshold"
type RealServer struct {
	// Address of the real server: a canonical unicast IP address a node can route (the same
	// classes as a VirtualService's addresses are refused: a loopback server would be a
	// different host on every node).
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be a valid IP address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip.isCanonical(self)",message="must be an IP address in canonical form"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isUnspecified()",message="must not be the unspecified address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLoopback()",message="must not be a loopback address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLinkLocalUnicast()",message="must not be a link-local address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip(self).isGlobalUnicast() || ip(self).isUnspecified() || ip(self).isLoopback() || ip(self).isLinkLocalUnicast()",message="must not be a multicast or broadcast address"
	Address string `json:"address"`

	// Port of the real server. The backendRef's port, else the VirtualService port, when unset.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`

	// Weight relative to the pool's other servers. 1 when unset; 0 sends no new connections.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=256
	Weight *int32 `json:"weight,omitempty"`

	// Enabled: false drains the server (weight 0, then removal after the drain timeout).
	// True when unset.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// UpperThreshold is the connection count above which the server gets no new
	// connections. 0 or unset: no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	UpperThreshold *int32 `json:"upperThreshold,omitempty"`

	// LowerThreshold is the connection count below which an overloaded server gets new
	// connections again. 0 or unset: the kernel's default (three quarters of the upper one).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	LowerThreshold *int32 `json:"lowerThreshold,omitempty"`
}

// BackendPoolSpec lists static real servers.
type BackendPoolSpec struct {
	// Servers of the pool, unique by address and port.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, b.address == a.address && (has(b.port) ? b.port : 0) == (has(a.port) ? a.port : 0)))",message="must not repeat an address and port"
	Servers []RealServer `json:"servers"`
}

// BackendPoolStatus is what the controller observed.
type BackendPoolStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Servers is the number of servers in the pool.
	// +optional
	Servers int32 `json:"servers"`

	// Enabled is the number of enabled servers.
	// +optional
	Enabled int32 `json:"enabled"`

	// ReferencedBy is the number of VirtualServices that reference the pool.
	// +optional
	ReferencedBy int32 `json:"referencedBy"`
}

// BackendPool is a set of static real servers outside the cluster, referenced from
// VirtualServices.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=kubelvs
// +kubebuilder:printcolumn:name="Servers",type=integer,JSONPath=`.status.servers`
// +kubebuilder:printcolumn:name="Enabled",type=integer,JSONPath=`.status.enabled`
// +kubebuilder:printcolumn:name="Referenced-By",type=integer,JSONPath=`.status.referencedBy`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackendPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BackendPoolSpec `json:"spec"`
	// +optional
	Status BackendPoolStatus `json:"status,omitempty"`
}

// BackendPoolList is a list of BackendPools.
//
// +kubebuilder:object:root=true
type BackendPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackendPool `json:"items"`
}
