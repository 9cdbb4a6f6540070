package controllers

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

func names(reqs []reconcile.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

// TestNodeTable: the IPVSNode handler enqueues exactly the VirtualServices whose entry
// appeared, changed or went away (an IPVSNode deleted takes its entries with it), and the
// table's report counts what the selected nodes say about the current generation.
func TestNodeTable(t *testing.T) {
	ctx := context.Background()
	table := newNodeTable()
	h := ipvsNodeEvents{table: table}
	entry := func(name string, gen int64, state v1alpha1.NodeVirtualServiceState) v1alpha1.NodeVirtualService {
		return v1alpha1.NodeVirtualService{Namespace: "n", Name: name, ObservedGeneration: gen, State: state, Reason: "R", Message: "m"}
	}
	in := func(node string, es ...v1alpha1.NodeVirtualService) *v1alpha1.IPVSNode {
		return &v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: node}, Status: v1alpha1.IPVSNodeStatus{VirtualServices: es}}
	}
	steps := []struct {
		name string
		do   func(q queue)
		want []string
	}{
		{"a node reports a and b", func(q queue) {
			h.Create(ctx, event.CreateEvent{Object: in("n1", entry("a", 1, v1alpha1.StateProgrammed), entry("b", 1, v1alpha1.StatePending))}, q)
		}, []string{"a", "b"}},
		{"b changes state, a does not", func(q queue) {
			h.Update(ctx, event.UpdateEvent{ObjectNew: in("n1", entry("a", 1, v1alpha1.StateProgrammed), entry("b", 1, v1alpha1.StateFailed))}, q)
		}, []string{"b"}},
		{"a goes away", func(q queue) {
			h.Update(ctx, event.UpdateEvent{ObjectNew: in("n1", entry("b", 1, v1alpha1.StateFailed))}, q)
		}, []string{"a"}},
		{"another node reports b", func(q queue) {
			h.Create(ctx, event.CreateEvent{Object: in("n2", entry("b", 1, v1alpha1.StateProgrammed))}, q)
		}, []string{"b"}},
		{"the first IPVSNode is deleted", func(q queue) {
			h.Delete(ctx, event.DeleteEvent{Object: in("n1", entry("b", 1, v1alpha1.StateFailed))}, q)
		}, []string{"b"}},
	}
	for _, st := range steps {
		q := &recordQueue{}
		st.do(q)
		if diff := cmp.Diff(st.want, names(q.reqs)); diff != "" {
			t.Errorf("%s: enqueued (-want +got):\n%s", st.name, diff)
		}
	}

	table.setNode("n1", map[string]string{"zone": "a"})
	table.setNode("n2", map[string]string{"zone": "a"})
	table.setNode("n3", map[string]string{"zone": "b"})
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "b", Generation: 1},
		Spec: v1alpha1.VirtualServiceSpec{Addresses: []string{"10.0.0.1"}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: "TCP"}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "w"}}, NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}}
	model := desired.NewModel(&desired.Cluster{VirtualServices: []*v1alpha1.VirtualService{vs}})
	got := table.report(model, types.NamespacedName{Namespace: "n", Name: "b"}, 1)
	want := nodeReport{selected: 2, programmed: 1, pending: []string{"n1"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(nodeReport{})); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if got := table.report(model, types.NamespacedName{Namespace: "n", Name: "b"}, 2); got.programmed != 0 || len(got.pending) != 2 {
		t.Errorf("report for generation 2: %+v; want both nodes pending", got)
	}
	table.deleteNode("n2")
	if got := table.report(model, types.NamespacedName{Namespace: "n", Name: "b"}, 1); got.selected != 1 {
		t.Errorf("after deleting n2: %+v; want 1 node selected", got)
	}
}

// TestNodeEvents: which VirtualServices each Node event enqueues.
func TestNodeEvents(t *testing.T) {
	ctx := context.Background()
	c := newMemCache()
	if err := SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	add := func(name string, sel map[string]string) {
		vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: name}}
		if sel != nil {
			vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: sel}
		}
		c.add(vs)
	}
	add("all", nil)
	add("zone-a", map[string]string{"zone": "a"})
	add("zone-b", map[string]string{"zone": "b"})
	add("ssd", map[string]string{"disk": "ssd"})
	c.add(&v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "bad-selector"},
		Spec: v1alpha1.VirtualServiceSpec{NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}})
	h := nodeEvents{c: c, table: newNodeTable()}
	node := func(l map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: l}}
	}
	a, b := node(map[string]string{"zone": "a"}), node(map[string]string{"zone": "b"})
	abSSD := node(map[string]string{"zone": "a", "disk": "ssd"})
	aMore := node(map[string]string{"zone": "a", "rack": "7"})
	tests := []struct {
		name string
		do   func(q queue)
		want []string
	}{
		{"create", func(q queue) { h.Create(ctx, event.CreateEvent{Object: a}, q) }, []string{"all", "zone-a"}},
		{"delete", func(q queue) { h.Delete(ctx, event.DeleteEvent{Object: abSSD}, q) }, []string{"all", "ssd", "zone-a"}},
		{"zone a to b", func(q queue) { h.Update(ctx, event.UpdateEvent{ObjectOld: a, ObjectNew: b}, q) }, []string{"zone-a", "zone-b"}},
		{"disk added", func(q queue) { h.Update(ctx, event.UpdateEvent{ObjectOld: a, ObjectNew: abSSD}, q) }, []string{"ssd"}},
		{"a label no selector reads", func(q queue) { h.Update(ctx, event.UpdateEvent{ObjectOld: a, ObjectNew: aMore}, q) }, nil},
		{"same labels (a heartbeat)", func(q queue) { h.Update(ctx, event.UpdateEvent{ObjectOld: a, ObjectNew: a.DeepCopy()}, q) }, nil},
	}
	for _, tt := range tests {
		q := &recordQueue{}
		c.reads = 0
		tt.do(q)
		if diff := cmp.Diff(tt.want, names(q.reqs)); diff != "" {
			t.Errorf("%s: enqueued (-want +got):\n%s", tt.name, diff)
		}
		if tt.name == "same labels (a heartbeat)" && c.reads != 0 {
			t.Errorf("a heartbeat read the cache %d times", c.reads)
		}
	}
	if l := h.table.labels["x"]; l["zone"] != "a" || l["rack"] != "7" {
		t.Errorf("table labels of x: %v; want the last update's", l)
	}
}
