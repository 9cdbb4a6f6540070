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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "kubelvs.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&VirtualService{}, &VirtualServiceList{},
		&BackendPool{}, &BackendPoolList{},
		&IPVSNode{}, &IPVSNodeList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
