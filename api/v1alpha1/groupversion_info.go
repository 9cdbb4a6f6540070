// Package v1alpha1 contains the kubelvs.io/v1alpha1 API: VirtualService (an IPVS virtual service
// and its backends), BackendPool (static real servers outside the cluster) and IPVSNode (what one
// node's agent programmed).
//
// Validation lives in the schema (enums, bounds, CEL rules); there are no admission webhooks and
// no schema defaults on spec fields: defaults are applied in code (package pkg/desired) and the
// effective values are shown in status.
//
// +kubebuilder:object:generate=true
// +groupName=kubelvs.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "kubelvs.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
