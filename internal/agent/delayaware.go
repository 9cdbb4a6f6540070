package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// addDelayLevels fills cl.DelayLevels, when a VirtualService of cl is DelayAware, with the
// weight levels of the pods behind its EndpointSlices, read from their kubelvs.io/TaskDelays
// condition (written by each pod's node agent) in the agent's pod cache.
func addDelayLevels(ctx context.Context, r client.Reader, cl *desired.Cluster) error {
	aware := false
	for _, vs := range cl.VirtualServices {
		aware = aware || vs.Spec.Weighting == v1alpha1.WeightingDelayAware
	}
	if !aware {
		return nil
	}
	cl.DelayLevels = map[types.NamespacedName]int{}
	for _, es := range cl.EndpointSlices {
		for _, ep := range es.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" {
				continue
			}
			k := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
			if k.Namespace == "" {
				k.Namespace = es.Namespace
			}
			var p corev1.Pod
			if err := r.Get(ctx, k, &p); err != nil {
				if client.IgnoreNotFound(err) == nil {
					continue
				}
				return fmt.Errorf("agent: get pod %s: %w", k, err)
			}
			if l := podstats.LevelOf(&p); l > 0 {
				cl.DelayLevels[k] = l
			}
		}
	}
	return nil
}

// onPod marks the VirtualServices backed by a pod whose delay-aware weight level changed (or
// that appeared or went with a level): those of the Services whose EndpointSlices in its
// namespace have it as an endpoint. Level changes are rare (at most one per pod per window).
func (r *Runner) onPod(ctx context.Context, old, cur client.Object) {
	op, _ := old.(*corev1.Pod)
	cp, _ := cur.(*corev1.Pod)
	level := func(p *corev1.Pod) int {
		if p == nil {
			return 0
		}
		return podstats.LevelOf(p)
	}
	if level(op) == level(cp) {
		return
	}
	p := cp
	if p == nil {
		p = op
	}
	var slices []types.NamespacedName
	if err := r.slicesOfPod(ctx, p, &slices); err != nil {
		r.cfg.Log.Error(err, "finding the Services of a pod whose weight level changed", "pod", client.ObjectKeyFromObject(p))
		r.markAll()
		return
	}
	for _, svc := range slices {
		r.mark(r.byIndex(ctx, controllers.IndexServiceRef, svc.Name, svc.Namespace), time.Time{})
	}
}

// slicesOfPod lists the Services (by their EndpointSlices' service label) that have p as an
// endpoint.
func (r *Runner) slicesOfPod(ctx context.Context, p *corev1.Pod, out *[]types.NamespacedName) error {
	var list discoveryv1.EndpointSliceList
	if err := r.cfg.Cache.List(ctx, &list, client.InNamespace(p.Namespace)); err != nil {
		return err
	}
	seen := map[types.NamespacedName]bool{}
	for i := range list.Items {
		es := &list.Items[i]
		for _, ep := range es.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.TargetRef.Name == p.Name &&
				(ep.TargetRef.Namespace == "" || ep.TargetRef.Namespace == p.Namespace) {
				k := types.NamespacedName{Namespace: es.Namespace, Name: es.Labels[discoveryv1.LabelServiceName]}
				if k.Name != "" && !seen[k] {
					seen[k] = true
					*out = append(*out, k)
				}
			}
		}
	}
	return nil
}
