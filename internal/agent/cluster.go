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
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// AnnotationTriggerTime is the EndpointSlice annotation with the time of the change that
// last changed it (set by the EndpointSlice controller); network programming latency is
// measured from it.
const AnnotationTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"

// Wants computes what each VirtualService in keys (and every VirtualService whose conflict
// resolution it takes part in) wants on node, from the objects r holds (the agent's cache
// with the controllers' field indexes). Only the objects those VirtualServices reference are
// read: the node's table is never recomputed from scratch for one change.
func Wants(ctx context.Context, r client.Reader, node desired.Node, keys []types.NamespacedName) ([]Want, error) {
	done := make(map[types.NamespacedName]bool, len(keys))
	var out []Want
	for _, key := range keys {
		if done[key] {
			continue
		}
		comp, err := conflictComponent(ctx, r, key)
		if err != nil {
			return nil, err
		}
		cl, err := clusterOf(ctx, r, comp)
		if err != nil {
			return nil, err
		}
		byOwner := servicesByOwner(desired.ForNode(cl, node))
		members := map[types.NamespacedName]int64{key: 0}
		for _, vs := range comp {
			members[types.NamespacedName{Namespace: vs.Namespace, Name: vs.Name}] = vs.Generation
		}
		for k, gen := range members {
			if !done[k] {
				done[k] = true
				out = append(out, Want{Key: k, Generation: gen, Services: byOwner[k]})
			}
		}
	}
	return out, nil
}

// WantsAll computes what each VirtualService in keys wants on node from one evaluation of
// every object r holds: Wants's result for all of them at once, for when every VirtualService
// is to be synced (start-up, a label change of the node).
func WantsAll(ctx context.Context, r client.Reader, node desired.Node, keys []types.NamespacedName) ([]Want, error) {
	cl := &desired.Cluster{}
	var vss v1alpha1.VirtualServiceList
	var svcs corev1.ServiceList
	var slices discoveryv1.EndpointSliceList
	var pools v1alpha1.BackendPoolList
	for _, l := range []client.ObjectList{&vss, &svcs, &slices, &pools} {
		if err := r.List(ctx, l); err != nil {
			return nil, fmt.Errorf("agent: list %T: %w", l, err)
		}
	}
	gens := make(map[types.NamespacedName]int64, len(vss.Items))
	for i := range vss.Items {
		cl.VirtualServices = append(cl.VirtualServices, &vss.Items[i])
		gens[types.NamespacedName{Namespace: vss.Items[i].Namespace, Name: vss.Items[i].Name}] = vss.Items[i].Generation
	}
	for i := range svcs.Items {
		cl.Services = append(cl.Services, &svcs.Items[i])
	}
	for i := range slices.Items {
		cl.EndpointSlices = append(cl.EndpointSlices, &slices.Items[i])
	}
	for i := range pools.Items {
		cl.BackendPools = append(cl.BackendPools, &pools.Items[i])
	}
	byOwner := servicesByOwner(desired.ForNode(cl, node))
	out := make([]Want, 0, len(keys))
	for _, k := range keys {
		out = append(out, Want{Key: k, Generation: gens[k], Services: byOwner[k]})
	}
	return out, nil
}

// servicesByOwner groups a node's desired services by their VirtualService.
func servicesByOwner(t *desired.Table) map[types.NamespacedName][]desired.Service {
	out := map[types.NamespacedName][]desired.Service{}
	for _, s := range t.Services {
		out[s.Owner] = append(out[s.Owner], s)
	}
	return out
}

// conflictComponent returns the VirtualService key (if it exists) and every VirtualService
// connected to it through shared address:port/protocol or firewall-mark keys: who wins a key
// depends on all of them (a VirtualService that lost one key claims none, which can free
// another key for a third).
func conflictComponent(ctx context.Context, r client.Reader, key types.NamespacedName) ([]*v1alpha1.VirtualService, error) {
	var first v1alpha1.VirtualService
	if err := r.Get(ctx, key, &first); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("agent: get VirtualService %s: %w", key, err)
	}
	seen := map[types.NamespacedName]bool{key: true}
	comp := []*v1alpha1.VirtualService{&first}
	seenKeys := map[string]bool{}
	for i := 0; i < len(comp); i++ {
		for _, ck := range desired.ConflictKeys(comp[i]) {
			if seenKeys[ck] {
				continue
			}
			seenKeys[ck] = true
			var list v1alpha1.VirtualServiceList
			if err := r.List(ctx, &list, client.MatchingFields{controllers.IndexConflictKey: ck}); err != nil {
				return nil, fmt.Errorf("agent: list VirtualServices claiming %s: %w", ck, err)
			}
			for j := range list.Items {
				vs := &list.Items[j]
				k := types.NamespacedName{Namespace: vs.Namespace, Name: vs.Name}
				if !seen[k] {
					seen[k] = true
					comp = append(comp, vs)
				}
			}
		}
	}
	return comp, nil
}

// clusterOf gathers the VirtualServices and the objects they reference.
func clusterOf(ctx context.Context, r client.Reader, vss []*v1alpha1.VirtualService) (*desired.Cluster, error) {
	cl := &desired.Cluster{VirtualServices: vss}
	seen := map[string]bool{}
	for _, vs := range vss {
		for _, ref := range vs.Spec.BackendRefs {
			k := types.NamespacedName{Namespace: vs.Namespace, Name: ref.Name}
			id := string(ref.EffectiveKind()) + "/" + k.String()
			if seen[id] {
				continue
			}
			seen[id] = true
			var err error
			switch ref.EffectiveKind() {
			case v1alpha1.BackendKindService:
				err = addService(ctx, r, cl, k)
			case v1alpha1.BackendKindBackendPool:
				err = addPool(ctx, r, cl, k)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if err := addDelayLevels(ctx, r, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

func addService(ctx context.Context, r client.Reader, cl *desired.Cluster, k types.NamespacedName) error {
	var svc corev1.Service
	if err := r.Get(ctx, k, &svc); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		return fmt.Errorf("agent: get Service %s: %w", k, err)
	}
	cl.Services = append(cl.Services, &svc)
	var slices discoveryv1.EndpointSliceList
	if err := r.List(ctx, &slices, client.InNamespace(k.Namespace),
		client.MatchingFields{controllers.IndexSliceService: k.Name}); err != nil {
		return fmt.Errorf("agent: list EndpointSlices of Service %s: %w", k, err)
	}
	for i := range slices.Items {
		cl.EndpointSlices = append(cl.EndpointSlices, &slices.Items[i])
	}
	return nil
}

func addPool(ctx context.Context, r client.Reader, cl *desired.Cluster, k types.NamespacedName) error {
	var p v1alpha1.BackendPool
	if err := r.Get(ctx, k, &p); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		return fmt.Errorf("agent: get BackendPool %s: %w", k, err)
	}
	cl.BackendPools = append(cl.BackendPools, &p)
	return nil
}

// triggerTime returns the EndpointSlice's last change trigger time, if it has one.
func triggerTime(o client.Object) (time.Time, bool) {
	v, ok := o.GetAnnotations()[AnnotationTriggerTime]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}
