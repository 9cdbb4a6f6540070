package agent

import (
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// TrimObject is the agent's cache transform. Every object loses what the agent never reads
// (managed fields, kubectl's last-applied annotation); the three kinds a node holds one of
// per VirtualService are rebuilt compactly, since at 10,000 VirtualServices they are most of
// the agent's memory:
//   - a VirtualService without its status (the controller's; the agent writes IPVSNode),
//     labels and annotations;
//   - a Service with only its name and ports (what pkg/desired resolves VirtualService ports
//     with);
//   - an EndpointSlice with its Service label, its trigger-time annotation, its ports, and per
//     endpoint the first address (the one consumers use, as kube-proxy does), the conditions,
//     the node and the pod it is.
//
// Strings many objects repeat (namespaces, node and port names, label values) are shared, as
// are the conditions' booleans: the cached objects are read without a copy and never
// changed (CacheOptions).
func TrimObject(o any) (any, error) {
	switch t := o.(type) {
	case *v1alpha1.VirtualService:
		t.ObjectMeta = trimMeta(&t.ObjectMeta)
		t.Status = v1alpha1.VirtualServiceStatus{}
		return t, nil
	case *corev1.Service:
		return &corev1.Service{TypeMeta: t.TypeMeta, ObjectMeta: trimMeta(&t.ObjectMeta),
			Spec: corev1.ServiceSpec{Ports: trimServicePorts(t.Spec.Ports)}}, nil
	case *discoveryv1.EndpointSlice:
		return trimSlice(t), nil
	case client.Object:
		t.SetManagedFields(nil)
		if a := t.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				t.SetAnnotations(a)
			}
		}
	}
	return o, nil
}

// trimMeta keeps of m what the agent and its caches read: identity, generation, creation
// (the older of two VirtualServices wins a shared key) and deletion. No labels or
// annotations: of those only its Node's and EndpointSlices' are read.
func trimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: intern(m.Namespace), UID: m.UID,
		ResourceVersion: m.ResourceVersion, Generation: m.Generation, CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp}
}

func trimServicePorts(ports []corev1.ServicePort) []corev1.ServicePort {
	if len(ports) == 0 {
		return nil
	}
	out := make([]corev1.ServicePort, len(ports))
	for i := range ports {
		p := &ports[i]
		out[i] = corev1.ServicePort{Name: intern(p.Name), Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort}
	}
	return out
}

func trimSlice(es *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	meta := trimMeta(&es.ObjectMeta)
	meta.UID = ""
	if svc, ok := es.Labels[discoveryv1.LabelServiceName]; ok {
		// Not interned: one Service's name, which no other object shares (a miss costs the
		// unique package an allocation and a weak pointer: 4 µs a slice on the host).
		meta.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	}
	if t, ok := es.Annotations[AnnotationTriggerTime]; ok {
		meta.Annotations = map[string]string{AnnotationTriggerTime: t}
	}
	out := &discoveryv1.EndpointSlice{TypeMeta: es.TypeMeta, ObjectMeta: meta, AddressType: es.AddressType}
	if len(es.Ports) > 0 {
		out.Ports = make([]discoveryv1.EndpointPort, len(es.Ports))
		for i, p := range es.Ports {
			out.Ports[i] = discoveryv1.EndpointPort{Name: internPtr(p.Name), Protocol: p.Protocol, Port: p.Port}
		}
	}
	if len(es.Endpoints) == 0 {
		return out
	}
	// One allocation each for the endpoints, their addresses and their pods.
	out.Endpoints = make([]discoveryv1.Endpoint, len(es.Endpoints))
	addrs := make([]string, len(es.Endpoints))
	pods := 0
	for i := range es.Endpoints {
		if r := es.Endpoints[i].TargetRef; r != nil && r.Kind == "Pod" {
			pods++
		}
	}
	refs := make([]corev1.ObjectReference, 0, pods)
	for i := range es.Endpoints {
		ep, o := &es.Endpoints[i], &out.Endpoints[i]
		if len(ep.Addresses) > 0 {
			addrs[i] = ep.Addresses[0]
			o.Addresses = addrs[i : i+1 : i+1]
		}
		o.Conditions = discoveryv1.EndpointConditions{Ready: sharedBool(ep.Conditions.Ready),
			Serving: sharedBool(ep.Conditions.Serving), Terminating: sharedBool(ep.Conditions.Terminating)}
		o.NodeName = internPtr(ep.NodeName)
		if r := ep.TargetRef; r != nil && r.Kind == "Pod" {
			refs = append(refs, corev1.ObjectReference{Kind: "Pod", Namespace: intern(r.Namespace), Name: r.Name})
			o.TargetRef = &refs[len(refs)-1]
		}
	}
	return out
}

// The conditions' booleans, shared by every cached endpoint.
var (
	boolTrue  = true
	boolFalse = false
)

func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &boolTrue
	}
	return &boolFalse
}

// intern returns the canonical copy of s (the unique package frees it when no object refers
// to it any more).
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// maxInternedPtrs bounds the pointers internPtr keeps for good (node and port names are few;
// a cluster with more distinct ones gets a pointer of its own per object past the bound).
const maxInternedPtrs = 1 << 14

var internedPtrs struct {
	mu sync.Mutex
	m  map[string]*string
}

// internPtr returns a pointer to the canonical copy of *p, shared by every caller that asks
// for the same string.
func internPtr(p *string) *string {
	if p == nil {
		return nil
	}
	internedPtrs.mu.Lock()
	defer internedPtrs.mu.Unlock()
	if q, ok := internedPtrs.m[*p]; ok {
		return q
	}
	s := intern(*p)
	q := &s
	if internedPtrs.m == nil {
		internedPtrs.m = map[string]*string{}
	}
	if len(internedPtrs.m) < maxInternedPtrs {
		internedPtrs.m[s] = q
	}
	return q
}
