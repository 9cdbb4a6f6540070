package controllers

import (
	"context"
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// Field indexes on VirtualServices, so that a change to one object reconciles only the
// VirtualServices that depend on it.
const (
	// IndexServiceRef indexes VirtualServices by the names of the Services they reference (in
	// their own namespace).
	IndexServiceRef = "kubelvs.io/service-ref"
	// IndexPoolRef indexes VirtualServices by the names of the BackendPools they reference.
	IndexPoolRef = "kubelvs.io/pool-ref"
	// IndexConflictKey indexes VirtualServices by the address:port/protocol and firewall-mark
	// keys they claim (cluster-wide).
	IndexConflictKey = "kubelvs.io/conflict-key"
	// IndexSliceService indexes EndpointSlices by the Service they belong to (their
	// kubernetes.io/service-name label): a label selector would make the cache scan every
	// slice of the namespace for each Service.
	IndexSliceService = "kubelvs.io/slice-service"
	// IndexNodeSelector indexes VirtualServices by whether they have a nodeSelector
	// (nodeSelectorSet or nodeSelectorUnset): a Node label change can only change the
	// selection of those that have one.
	IndexNodeSelector = "kubelvs.io/node-selector"
)

// Values of IndexNodeSelector.
const (
	nodeSelectorSet   = "set"
	nodeSelectorUnset = "unset"
)

// SetupIndexes registers the field indexes the reconcilers use.
func SetupIndexes(ctx context.Context, idx client.FieldIndexer) error {
	for name, fn := range map[string]client.IndexerFunc{
		IndexServiceRef:   func(o client.Object) []string { return refNames(o, v1alpha1.BackendKindService) },
		IndexPoolRef:      func(o client.Object) []string { return refNames(o, v1alpha1.BackendKindBackendPool) },
		IndexConflictKey:  conflictKeys,
		IndexNodeSelector: hasNodeSelector,
	} {
		if err := idx.IndexField(ctx, &v1alpha1.VirtualService{}, name, fn); err != nil {
			return fmt.Errorf("indexing VirtualServices by %s: %w", name, err)
		}
	}
	if err := idx.IndexField(ctx, &discoveryv1.EndpointSlice{}, IndexSliceService, func(o client.Object) []string {
		if svc := o.GetLabels()[discoveryv1.LabelServiceName]; svc != "" {
			return []string{svc}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing EndpointSlices by %s: %w", IndexSliceService, err)
	}
	return nil
}

func refNames(o client.Object, kind v1alpha1.BackendKind) []string {
	vs, ok := o.(*v1alpha1.VirtualService)
	if !ok {
		return nil
	}
	var out []string
	for _, r := range vs.Spec.BackendRefs {
		if r.EffectiveKind() == kind {
			out = append(out, r.Name)
		}
	}
	return out
}

func hasNodeSelector(o client.Object) []string {
	vs, ok := o.(*v1alpha1.VirtualService)
	switch {
	case !ok:
		return nil
	case vs.Spec.NodeSelector != nil:
		return []string{nodeSelectorSet}
	}
	return []string{nodeSelectorUnset}
}

func conflictKeys(o client.Object) []string {
	vs, ok := o.(*v1alpha1.VirtualService)
	if !ok {
		return nil
	}
	return desired.ConflictKeys(vs)
}

// listByIndex lists the VirtualServices whose index field has value (in namespace ns, or
// everywhere when ns is empty) as reconcile keys.
func listByIndex(ctx context.Context, c client.Reader, index, value, ns string) ([]types.NamespacedName, error) {
	var list v1alpha1.VirtualServiceList
	opts := []client.ListOption{client.MatchingFields{index: value}}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing VirtualServices by %s=%s: %w", index, value, err)
	}
	out := make([]types.NamespacedName, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name})
	}
	return out, nil
}
