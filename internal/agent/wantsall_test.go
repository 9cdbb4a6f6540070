package agent

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// builderIndexer adds the controllers' field indexes to a fake client under construction.
type builderIndexer struct{ b *fake.ClientBuilder }

func (i builderIndexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

// TestWantsAllIsWants: the start-up path (one evaluation of the whole node) wants exactly what
// the per-change path (one conflict component at a time) wants, on a cluster with a conflict
// decided by age, a pool, a Service with slices, a nodeSelector that excludes the node, a
// VirtualService whose Service is missing, and a key of a deleted VirtualService.
func TestWantsAllIsWants(t *testing.T) {
	old := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	young := metav1.NewTime(old.Add(time.Hour))
	vs := func(name string, created metav1.Time, addr string, port int32, ref v1alpha1.BackendRef, sel map[string]string) *v1alpha1.VirtualService {
		v := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 3, CreationTimestamp: created},
			Spec: v1alpha1.VirtualServiceSpec{Addresses: []string{addr},
				Ports:       []v1alpha1.VirtualServicePort{{Port: port, Protocol: v1alpha1.ProtocolTCP}},
				BackendRefs: []v1alpha1.BackendRef{ref}}}
		if sel != nil {
			v.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: sel}
		}
		return v
	}
	svcRef := v1alpha1.BackendRef{Name: "web"}
	poolRef := v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "pool"}
	objs := []client.Object{
		vs("a-winner", old, "192.0.2.1", 80, svcRef, nil),
		vs("b-loser", young, "192.0.2.1", 80, poolRef, nil), // same key, younger: loses
		vs("c-pool", old, "192.0.2.2", 443, poolRef, nil),
		vs("d-elsewhere", old, "192.0.2.3", 80, svcRef, map[string]string{"zone": "b"}),
		vs("e-nosvc", old, "192.0.2.4", 80, v1alpha1.BackendRef{Name: "missing"}, nil),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{endpoint("10.1.0.1", true), endpoint("10.1.0.2", false)}},
		&v1alpha1.BackendPool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pool"}, Spec: v1alpha1.BackendPoolSpec{
			Servers: []v1alpha1.RealServer{{Address: "10.2.0.1", Port: ptr.To[int32](8443), Weight: ptr.To[int32](3)}}}},
	}
	b := fake.NewClientBuilder().WithScheme(env.Scheme).WithObjects(objs...)
	must(t, controllers.SetupIndexes(t.Context(), builderIndexer{b}))
	c := b.Build()
	node := desired.Node{Name: "n1", Labels: map[string]string{"zone": "a"}}
	keys := []types.NamespacedName{{Namespace: "ns", Name: "gone"}}
	for _, o := range objs {
		if _, ok := o.(*v1alpha1.VirtualService); ok {
			keys = append(keys, types.NamespacedName{Namespace: "ns", Name: o.GetName()})
		}
	}
	one, err := Wants(t.Context(), c, node, keys)
	must(t, err)
	all, err := WantsAll(t.Context(), c, node, keys)
	must(t, err)
	byKey := func(a, b Want) int { return compareNames(a.Key, b.Key) }
	slices.SortFunc(one, byKey)
	slices.SortFunc(all, byKey)
	if diff := cmp.Diff(one, all, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("WantsAll differs from Wants (-Wants +WantsAll):\n%s", diff)
	}
	// The case is not vacuous: the winner, the pool and the VirtualService whose Service is
	// missing (a service without destinations) have services; the loser and the other node none.
	got := map[string]int{}
	for _, w := range all {
		got[w.Key.Name] = len(w.Services)
	}
	want := map[string]int{"gone": 0, "a-winner": 1, "b-loser": 0, "c-pool": 1, "d-elsewhere": 0, "e-nosvc": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services per VirtualService (-want +got):\n%s", diff)
	}
}
