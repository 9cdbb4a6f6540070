package podstats

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
)

// AnnotationTaskstats set to "true" on a pod asks for its condition even when it is no
// VirtualService's backend.
const AnnotationTaskstats = "kubelvs.io/taskstats"

// Selected returns the running pods on node whose condition the agent keeps: endpoints (on this
// node) of a Service any VirtualService references, and pods annotated kubelvs.io/taskstats:
// "true". r is the agent's cache (pods of this node only, EndpointSlices indexed by Service).
func Selected(ctx context.Context, r client.Reader, node string) ([]*corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods); err != nil {
		return nil, fmt.Errorf("podstats: list pods: %w", err)
	}
	backends, err := backendPods(ctx, r, node)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning || p.UID == "" {
			continue
		}
		if p.Annotations[AnnotationTaskstats] == "true" || backends[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] {
			out = append(out, p)
		}
	}
	return out, nil
}

// backendPods returns the pods on node that are endpoints of a Service a VirtualService uses.
func backendPods(ctx context.Context, r client.Reader, node string) (map[types.NamespacedName]bool, error) {
	var vss v1alpha1.VirtualServiceList
	if err := r.List(ctx, &vss); err != nil {
		return nil, fmt.Errorf("podstats: list VirtualServices: %w", err)
	}
	out := map[types.NamespacedName]bool{}
	seen := map[types.NamespacedName]bool{}
	for i := range vss.Items {
		vs := &vss.Items[i]
		for _, ref := range vs.Spec.BackendRefs {
			k := types.NamespacedName{Namespace: vs.Namespace, Name: ref.Name}
			if ref.EffectiveKind() != v1alpha1.BackendKindService || seen[k] {
				continue
			}
			seen[k] = true
			var slices discoveryv1.EndpointSliceList
			if err := r.List(ctx, &slices, client.InNamespace(k.Namespace),
				client.MatchingFields{controllers.IndexSliceService: k.Name}); err != nil {
				return nil, fmt.Errorf("podstats: list EndpointSlices of Service %s: %w", k, err)
			}
			for j := range slices.Items {
				for _, ep := range slices.Items[j].Endpoints {
					if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.NodeName != nil && *ep.NodeName == node {
						ns := ep.TargetRef.Namespace
						if ns == "" {
							ns = k.Namespace
						}
						out[types.NamespacedName{Namespace: ns, Name: ep.TargetRef.Name}] = true
					}
				}
			}
		}
	}
	return out, nil
}

// TrimPod is the agent's cache transform for pods: it keeps what selection, sampling and the
// weights need (identity, annotations, node, phase, QoS class, conditions) and drops the rest
// (specs of containers, their statuses, managed fields), which are most of a pod's size.
func TrimPod(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	t := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: metav1ObjectMeta(p)}
	t.Spec.NodeName = p.Spec.NodeName
	t.Spec.ReadinessGates = p.Spec.ReadinessGates
	t.Status.Phase, t.Status.QOSClass, t.Status.Conditions = p.Status.Phase, p.Status.QOSClass, p.Status.Conditions
	t.Status.PodIP, t.Status.PodIPs = p.Status.PodIP, p.Status.PodIPs
	return t, nil
}

func metav1ObjectMeta(p *corev1.Pod) (m metav1.ObjectMeta) {
	m = p.ObjectMeta
	m.ManagedFields = nil
	if a := m.Annotations; a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			c := make(map[string]string, len(a))
			for k, v := range a {
				if k != corev1.LastAppliedConfigAnnotation {
					c[k] = v
				}
			}
			m.Annotations = c
		}
	}
	return m
}
