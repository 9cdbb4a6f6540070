package podstats

import (
	"context"
	"fmt"
	"slices"

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

// Field indexes of the agent's cache that selection reads through (SetupIndexes): every
// node's agent caches every pod (delay-aware weights read backend pods of any node), and a
// round must cost what this node has, not what the cluster has.
const (
	// IndexPodNode indexes pods by spec.nodeName.
	IndexPodNode = "kubelvs.io/pod-node"
	// IndexSliceNode indexes EndpointSlices by the nodes of their endpoints that are pods.
	IndexSliceNode = "kubelvs.io/slice-node"
)

// SetupIndexes registers the field indexes Selected uses (beside controllers.SetupIndexes).
func SetupIndexes(ctx context.Context, idx client.FieldIndexer) error {
	if err := idx.IndexField(ctx, &corev1.Pod{}, IndexPodNode, func(o client.Object) []string {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("podstats: index pods by node: %w", err)
	}
	if err := idx.IndexField(ctx, &discoveryv1.EndpointSlice{}, IndexSliceNode, sliceNodes); err != nil {
		return fmt.Errorf("podstats: index EndpointSlices by node: %w", err)
	}
	return nil
}

func sliceNodes(o client.Object) []string {
	es, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil
	}
	var out []string
	for _, ep := range es.Endpoints {
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.NodeName != nil && *ep.NodeName != "" && !slices.Contains(out, *ep.NodeName) {
			out = append(out, *ep.NodeName)
		}
	}
	return out
}

// Selected returns the running pods on node whose condition the agent keeps: endpoints (on this
// node) of a Service any VirtualService references, and pods annotated kubelvs.io/taskstats:
// "true". r is the agent's cache, with the indexes of controllers.SetupIndexes and SetupIndexes.
func Selected(ctx context.Context, r client.Reader, node string) ([]*corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.MatchingFields{IndexPodNode: node}); err != nil {
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

// backendPods returns the pods on node that are endpoints of a Service a VirtualService uses:
// it reads the EndpointSlices with endpoints on node, and asks of each one's Service whether a
// VirtualService references it.
func backendPods(ctx context.Context, r client.Reader, node string) (map[types.NamespacedName]bool, error) {
	var list discoveryv1.EndpointSliceList
	if err := r.List(ctx, &list, client.MatchingFields{IndexSliceNode: node}); err != nil {
		return nil, fmt.Errorf("podstats: list EndpointSlices of node %s: %w", node, err)
	}
	out := map[types.NamespacedName]bool{}
	used := map[types.NamespacedName]bool{}
	for i := range list.Items {
		es := &list.Items[i]
		svc := types.NamespacedName{Namespace: es.Namespace, Name: es.Labels[discoveryv1.LabelServiceName]}
		if svc.Name == "" {
			continue
		}
		u, known := used[svc]
		if !known {
			var vss v1alpha1.VirtualServiceList
			if err := r.List(ctx, &vss, client.InNamespace(svc.Namespace), client.MatchingFields{controllers.IndexServiceRef: svc.Name}); err != nil {
				return nil, fmt.Errorf("podstats: list VirtualServices of Service %s: %w", svc, err)
			}
			u = len(vss.Items) > 0
			used[svc] = u
		}
		if !u {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.NodeName != nil && *ep.NodeName == node {
				ns := ep.TargetRef.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				out[types.NamespacedName{Namespace: ns, Name: ep.TargetRef.Name}] = true
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
