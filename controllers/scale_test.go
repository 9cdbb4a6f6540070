package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// memCache stands in for the manager's cache in the scale benchmark: it serves Get and List
// from memory (with the controller's field indexes, label selectors and namespaces, as the
// informer cache does, but without copying, so that the benchmark measures the controller and
// not the copies) and counts every read and status write.
type memCache struct {
	client.Client                                                   // nil: any other method panics, so the benchmark notices new calls
	objs          map[string]map[types.NamespacedName]client.Object // by kind
	indexes       map[string]client.IndexerFunc                     // VirtualService field indexes
	reads, items  int
	writes        int
}

func newMemCache() *memCache {
	return &memCache{objs: map[string]map[types.NamespacedName]client.Object{}, indexes: map[string]client.IndexerFunc{}}
}

func kindOf(o runtime.Object) string {
	switch o.(type) {
	case *v1alpha1.VirtualService, *v1alpha1.VirtualServiceList:
		return "VirtualService"
	case *v1alpha1.IPVSNode, *v1alpha1.IPVSNodeList:
		return "IPVSNode"
	case *v1alpha1.BackendPool, *v1alpha1.BackendPoolList:
		return "BackendPool"
	case *corev1.Node, *corev1.NodeList:
		return "Node"
	case *corev1.Service, *corev1.ServiceList:
		return "Service"
	case *discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList:
		return "EndpointSlice"
	}
	panic(fmt.Sprintf("memCache: unexpected type %T", o))
}

// IndexField records the indexes SetupIndexes registers (their field names differ by kind).
func (c *memCache) IndexField(_ context.Context, _ client.Object, field string, fn client.IndexerFunc) error {
	c.indexes[field] = fn
	return nil
}

func (c *memCache) add(o client.Object) {
	k := kindOf(o)
	if c.objs[k] == nil {
		c.objs[k] = map[types.NamespacedName]client.Object{}
	}
	c.objs[k][client.ObjectKeyFromObject(o)] = o
}

func (c *memCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	c.reads++
	o, ok := c.objs[kindOf(obj)][key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: kindOf(obj)}, key.Name)
	}
	c.items++
	switch dst := obj.(type) {
	case *v1alpha1.VirtualService:
		*dst = *o.(*v1alpha1.VirtualService)
	case *v1alpha1.IPVSNode:
		*dst = *o.(*v1alpha1.IPVSNode)
	case *v1alpha1.BackendPool:
		*dst = *o.(*v1alpha1.BackendPool)
	case *corev1.Node:
		*dst = *o.(*corev1.Node)
	case *corev1.Service:
		*dst = *o.(*corev1.Service)
	}
	return nil
}

func (c *memCache) matches(o client.Object, lo *client.ListOptions) bool {
	if lo.Namespace != "" && o.GetNamespace() != lo.Namespace {
		return false
	}
	if lo.LabelSelector != nil && !lo.LabelSelector.Matches(labels.Set(o.GetLabels())) {
		return false
	}
	if lo.FieldSelector == nil || lo.FieldSelector.Empty() {
		return true
	}
	for field, fn := range c.indexes {
		if want, ok := lo.FieldSelector.RequiresExactMatch(field); ok {
			for _, v := range fn(o) {
				if v == want {
					return true
				}
			}
			return false
		}
	}
	panic("memCache: unindexed field selector " + lo.FieldSelector.String())
}

func (c *memCache) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.reads++
	lo := &client.ListOptions{}
	lo.ApplyOptions(opts)
	for _, o := range c.objs[kindOf(list)] {
		if !c.matches(o, lo) {
			continue
		}
		c.items++
		switch l := list.(type) {
		case *v1alpha1.VirtualServiceList:
			l.Items = append(l.Items, *o.(*v1alpha1.VirtualService))
		case *v1alpha1.IPVSNodeList:
			l.Items = append(l.Items, *o.(*v1alpha1.IPVSNode))
		case *corev1.NodeList:
			l.Items = append(l.Items, *o.(*corev1.Node))
		case *discoveryv1.EndpointSliceList:
			l.Items = append(l.Items, *o.(*discoveryv1.EndpointSlice))
		default:
			panic(fmt.Sprintf("memCache: unexpected list %T", list))
		}
	}
	return nil
}

func (c *memCache) Status() client.SubResourceWriter { return statusWriter{c} }

type statusWriter struct{ c *memCache }

func (w statusWriter) Create(context.Context, client.Object, client.Object, ...client.SubResourceCreateOption) error {
	panic("memCache: status create")
}

func (w statusWriter) Update(context.Context, client.Object, ...client.SubResourceUpdateOption) error {
	panic("memCache: status update")
}

func (w statusWriter) Patch(context.Context, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
	panic("memCache: status patch")
}

// Apply stores the applied VirtualService status, so that reconciles after it see it (and
// write nothing when it did not change).
func (w statusWriter) Apply(_ context.Context, ac runtime.ApplyConfiguration, _ ...client.SubResourceApplyOption) error {
	w.c.writes++
	data, err := json.Marshal(ac)
	if err != nil {
		return err
	}
	var applied v1alpha1.VirtualService
	if err := json.Unmarshal(data, &applied); err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(&applied)
	cur, ok := w.c.objs["VirtualService"][key].(*v1alpha1.VirtualService)
	if !ok {
		return fmt.Errorf("status of a missing VirtualService %s", key)
	}
	next := cur.DeepCopy()
	next.Status = applied.Status
	w.c.add(next)
	return nil
}

// scaleCluster is the benchmark's cluster: nodes nodes labelled pool=p<i%pools>, vss
// VirtualServices (each with its own Service and one ready endpoint), the first half without a
// nodeSelector, the second half selecting one pool each, and every node's IPVSNode reporting
// every VirtualService it is selected for as programmed.
func scaleCluster(c *memCache, nodes, vss, pools int) {
	entries := make([][]v1alpha1.NodeVirtualService, nodes)
	for i := range vss {
		name := fmt.Sprintf("vs-%d", i)
		vs := &v1alpha1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name, Generation: 1},
			Spec: v1alpha1.VirtualServiceSpec{
				Addresses:   []string{fmt.Sprintf("10.%d.%d.1", i/256, i%256)},
				Ports:       []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
				BackendRefs: []v1alpha1.BackendRef{{Name: name}},
			},
		}
		pool := -1
		if i >= vss/2 {
			pool = i % pools
			vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": fmt.Sprintf("p%d", pool)}}
		}
		c.add(vs)
		c.add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}})
		c.add(&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.200.%d.%d", i/256, i%256)}}},
		})
		for n := range nodes {
			if pool < 0 || n%pools == pool {
				entries[n] = append(entries[n], v1alpha1.NodeVirtualService{Namespace: "bench", Name: name,
					ObservedGeneration: 1, State: v1alpha1.StateProgrammed})
			}
		}
	}
	for n := range nodes {
		name := fmt.Sprintf("node-%d", n)
		c.add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": fmt.Sprintf("p%d", n%pools)}}})
		c.add(&v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1alpha1.IPVSNodeStatus{VirtualServices: entries[n]}})
	}
}

// relabel moves node-0 to the next pool (and back on the next call), as a user would, and
// returns the Node before and after.
func relabel(c *memCache) (before, after *corev1.Node) {
	key := types.NamespacedName{Name: "node-0"}
	before = c.objs["Node"][key].(*corev1.Node)
	after = before.DeepCopy()
	if before.Labels["pool"] == "p0" {
		after.Labels["pool"] = "p1"
	} else {
		after.Labels["pool"] = "p0"
	}
	c.add(after)
	return before, after
}

// recordQueue is a workqueue that records what is added, once each (as the workqueue
// coalesces a key queued twice before it is processed).
type recordQueue struct {
	queue // nil: any other method panics
	reqs  []reconcile.Request
	seen  map[reconcile.Request]bool
}

func (q *recordQueue) Add(r reconcile.Request) {
	if q.seen == nil {
		q.seen = map[reconcile.Request]bool{}
	}
	if !q.seen[r] {
		q.seen[r] = true
		q.reqs = append(q.reqs, r)
	}
}

// startWatches delivers the initial Node and IPVSNode events to the reconciler's handlers, as
// the informers do when the controller starts.
func startWatches(ctx context.Context, c *memCache, r *VirtualServiceReconciler) {
	r.nodes = newNodeTable()
	q := &recordQueue{}
	for _, o := range c.objs["Node"] {
		nodeEvents{c: c, table: r.nodes}.Create(ctx, event.CreateEvent{Object: o}, q)
	}
	for _, o := range c.objs["IPVSNode"] {
		ipvsNodeEvents{table: r.nodes}.Create(ctx, event.CreateEvent{Object: o}, q)
	}
}

// BenchmarkNodeLabelChange: at 1,000 VirtualServices (500 on every node, 500 selecting one of
// 10 pools) and 100 nodes, one Node label change (node-0 moves from pool p0 to p1): the
// reconciles it causes and the reads (Get and List calls on the cache) and objects they read.
func BenchmarkNodeLabelChange(b *testing.B) {
	const nodes, vss, pools = 100, 1000, 10
	ctx := context.Background()
	c := newMemCache()
	if err := SetupIndexes(ctx, c); err != nil {
		b.Fatal(err)
	}
	scaleCluster(c, nodes, vss, pools)
	r := &VirtualServiceReconciler{Client: c}
	startWatches(ctx, c, r)
	// Settle first: every VirtualService's status written once, as in a running cluster.
	for _, o := range c.objs["VirtualService"] {
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)}); err != nil {
			b.Fatal(err)
		}
	}
	var reconciles int
	c.reads, c.items, c.writes = 0, 0, 0 // count only what the label changes cause
	for b.Loop() {
		before, after := relabel(c)
		q := &recordQueue{}
		nodeEvents{c: c, table: r.nodes}.Update(ctx, event.UpdateEvent{ObjectOld: before, ObjectNew: after}, q)
		reqs := q.reqs
		for _, req := range reqs {
			if _, err := r.Reconcile(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		reconciles += len(reqs)
	}
	n := float64(b.N)
	b.ReportMetric(float64(reconciles)/n, "reconciles/op")
	b.ReportMetric(float64(c.reads)/n, "reads/op")
	b.ReportMetric(float64(c.items)/n, "objects-read/op")
	b.ReportMetric(float64(c.writes)/n, "status-writes/op")
}

// TestGatherRefusesUnknownKinds: gather reads a backendRef's object by its effective kind
// (v1alpha1.BackendRef.EffectiveKind), as pkg/desired and the indexes do; an unknown kind
// reads nothing (gather used to read it as a Service) and is not indexed as either kind.
func TestGatherRefusesUnknownKinds(t *testing.T) {
	ctx := context.Background()
	c := newMemCache()
	if err := SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "k", Name: "web"}})
	c.add(&v1alpha1.BackendPool{ObjectMeta: metav1.ObjectMeta{Namespace: "k", Name: "web"}})
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "k", Name: "v"},
		Spec: v1alpha1.VirtualServiceSpec{Addresses: []string{"10.0.0.1"}, BackendRefs: []v1alpha1.BackendRef{{Kind: "Pod", Name: "web"}}}}
	got, err := (&VirtualServiceReconciler{Client: c}).gather(ctx, vs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 0 || len(got.BackendPools) != 0 {
		t.Errorf("gather read %d Services and %d BackendPools for a backendRef of kind Pod; want none", len(got.Services), len(got.BackendPools))
	}
	for _, kind := range []v1alpha1.BackendKind{v1alpha1.BackendKindService, v1alpha1.BackendKindBackendPool} {
		if names := refNames(vs, kind); len(names) != 0 {
			t.Errorf("refNames(%s) = %v; want none", kind, names)
		}
	}
	vs.Spec.BackendRefs = []v1alpha1.BackendRef{{Name: "web"}, {Kind: v1alpha1.BackendKindBackendPool, Name: "web"}}
	if got, err = (&VirtualServiceReconciler{Client: c}).gather(ctx, vs); err != nil || len(got.Services) != 1 || len(got.BackendPools) != 1 {
		t.Errorf("gather of a Service and a BackendPool ref: %d Services, %d BackendPools, %v; want 1, 1", len(got.Services), len(got.BackendPools), err)
	}
}
