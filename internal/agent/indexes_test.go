package agent

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// Through the agent's indexer, every lookup the agent makes finds what it should (in a real
// cache over the real API server), and each index holds a value once: in the namespace for the
// namespaced lookups, for all namespaces for the others.
func TestIndexer(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "index-"}}
	must(t, c.Create(ctx, ns))
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{"192.0.2.77"}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: "web"}, {Kind: v1alpha1.BackendKindBackendPool, Name: "pool"}}}}
	must(t, c.Create(ctx, vs))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns.Name, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, NodeName: ptr.To("index-node"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns.Name, Name: "web-0"}}},
	}
	must(t, c.Create(ctx, slice))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web-0"}, Spec: corev1.PodSpec{
		NodeName: "index-node", Containers: []corev1.Container{{Name: "c", Image: "example.com/c"}}}}
	must(t, c.Create(ctx, pod))

	ca, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, DefaultTransform: TrimObject})
	must(t, err)
	must(t, controllers.SetupIndexes(ctx, Indexer(ca)))
	must(t, podstats.SetupIndexes(ctx, Indexer(ca)))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = ca.Start(cctx) }()
	if !ca.WaitForCacheSync(cctx) {
		t.Fatal("cache did not sync")
	}

	names := func(l client.ObjectList) []string {
		var out []string
		items, err := apimeta.ExtractList(l)
		must(t, err)
		for _, o := range items {
			out = append(out, o.(client.Object).GetName())
		}
		return out
	}
	for _, tc := range []struct {
		index, value string
		obj          client.Object // of the informer holding the index
		list         client.ObjectList
		namespaced   bool
		want         []string
	}{
		{controllers.IndexServiceRef, "web", vs, &v1alpha1.VirtualServiceList{}, true, []string{"web"}},
		{controllers.IndexPoolRef, "pool", vs, &v1alpha1.VirtualServiceList{}, true, []string{"web"}},
		{controllers.IndexSliceService, "web", slice, &discoveryv1.EndpointSliceList{}, true, []string{"web-1"}},
		{controllers.IndexConflictKey, desired.ConflictKeys(vs)[0], vs, &v1alpha1.VirtualServiceList{}, false, []string{"web"}},
		{podstats.IndexPodNode, "index-node", pod, &corev1.PodList{}, false, []string{"web-0"}},
		{podstats.IndexSliceNode, "index-node", slice, &discoveryv1.EndpointSliceList{}, false, []string{"web-1"}},
	} {
		opts := []client.ListOption{client.MatchingFields{tc.index: tc.value}}
		if tc.namespaced {
			opts = append(opts, client.InNamespace(ns.Name))
		}
		must(t, ca.List(ctx, tc.list, opts...))
		if diff := cmp.Diff(tc.want, names(tc.list)); diff != "" {
			t.Errorf("%s=%s: listed (-want +got):\n%s", tc.index, tc.value, diff)
		}
		// The index holds the value once, under the key of the scope the agent reads.
		inf, err := ca.GetInformer(ctx, tc.obj)
		must(t, err)
		keys := inf.(toolscache.SharedIndexInformer).GetIndexer().ListIndexFuncValues("field:" + tc.index)
		wantKey, otherKey := "__all_namespaces/"+tc.value, ns.Name+"/"+tc.value
		if tc.namespaced {
			wantKey, otherKey = otherKey, wantKey
		}
		if !slices.Contains(keys, wantKey) || slices.Contains(keys, otherKey) {
			t.Errorf("%s: index keys %v: want %q and not %q", tc.index, keys, wantKey, otherKey)
		}
	}
	// An index the agent never reads is not kept.
	inf, err := ca.GetInformer(ctx, vs)
	must(t, err)
	if _, ok := inf.(toolscache.SharedIndexInformer).GetIndexer().GetIndexers()["field:"+controllers.IndexNodeSelector]; ok {
		t.Errorf("the unread index %s is registered", controllers.IndexNodeSelector)
	}
}
