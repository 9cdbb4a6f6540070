package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// nodeTable is the VirtualService controller's view of the nodes (their labels) and of what
// each node's IPVSNode reports per VirtualService, so that a reconcile counts nodes in memory
// instead of listing every Node and reading every IPVSNode (which made a full resync
// quadratic: VirtualServices x nodes x IPVSNode entries copied).
//
// The Node and IPVSNode watch handlers update it before they enqueue, in the informer's
// order, so a reconcile always sees at least the change that caused it. It is safe for
// concurrent use.
type nodeTable struct {
	mu      sync.RWMutex
	labels  map[string]labels.Set                         // by node name
	reports map[types.NamespacedName]map[string]nodeEntry // by VirtualService, then node
	leases  map[string]time.Time                          // agent Lease expiry, by node
	now     func() time.Time
}

// nodeEntry is what one node reports about one VirtualService.
type nodeEntry struct {
	generation      int64
	state           v1alpha1.NodeVirtualServiceState
	reason, message string
}

func newNodeTable() *nodeTable {
	return &nodeTable{labels: map[string]labels.Set{}, reports: map[types.NamespacedName]map[string]nodeEntry{},
		leases: map[string]time.Time{}, now: time.Now}
}

func (t *nodeTable) setNode(name string, l map[string]string) {
	t.mu.Lock()
	t.labels[name] = maps.Clone(labels.Set(l))
	t.mu.Unlock()
}

func (t *nodeTable) deleteNode(name string) {
	t.mu.Lock()
	delete(t.labels, name)
	t.mu.Unlock()
}

// setEntries replaces what node reports (nil: its IPVSNode is gone) and returns the
// VirtualServices whose entry appeared, changed or went away.
func (t *nodeTable) setEntries(node string, entries []v1alpha1.NodeVirtualService) []types.NamespacedName {
	t.mu.Lock()
	defer t.mu.Unlock()
	var changed []types.NamespacedName
	seen := make(map[types.NamespacedName]bool, len(entries))
	for i := range entries {
		e := &entries[i]
		k := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
		seen[k] = true
		ne := nodeEntry{generation: e.ObservedGeneration, state: e.State, reason: e.Reason, message: e.Message}
		byNode := t.reports[k]
		if byNode == nil {
			byNode = map[string]nodeEntry{}
			t.reports[k] = byNode
		}
		if old, had := byNode[node]; had && old == ne {
			continue
		}
		byNode[node] = ne
		changed = append(changed, k)
	}
	for k, byNode := range t.reports {
		if _, had := byNode[node]; had && !seen[k] {
			delete(byNode, node)
			if len(byNode) == 0 {
				delete(t.reports, k)
			}
			changed = append(changed, k)
		}
	}
	return changed
}

// report counts the nodes model selects for the VirtualService key and what they report
// for generation gen.
func (t *nodeTable) report(model *desired.Model, key types.NamespacedName, gen int64) nodeReport {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var nr nodeReport
	byNode := t.reports[key]
	now := t.now()
	for name, l := range t.labels {
		if !model.Selects(key, desired.Node{Name: name, Labels: l}) {
			continue
		}
		nr.selected++
		e, ok := byNode[name]
		switch {
		case t.expiredLocked(name, now):
			// Its agent stopped renewing: what it last reported may no longer be true.
			nr.pending = append(nr.pending, name+" (agent Lease expired)")
		case !ok || e.generation != gen:
			nr.pending = append(nr.pending, name)
		case e.state == v1alpha1.StateProgrammed:
			nr.programmed++
		case e.state == v1alpha1.StateFailed:
			nr.failed = append(nr.failed, fmt.Sprintf("%s: %s: %s", name, e.reason, e.message))
		default:
			nr.pending = append(nr.pending, name)
		}
	}
	slices.Sort(nr.pending)
	slices.Sort(nr.failed)
	return nr
}

// nodeEvents keeps the table's node labels and enqueues the VirtualServices whose selection a
// Node event can change: on create and delete, those that select the node; on a label
// change, only those with a nodeSelector whose verdict differs between the old and the new
// labels (a VirtualService without one selects every node whatever its labels).
type nodeEvents struct {
	c     client.Reader
	table *nodeTable
}

func (h nodeEvents) Create(ctx context.Context, e event.CreateEvent, q queue) {
	h.table.setNode(e.Object.GetName(), e.Object.GetLabels())
	h.enqueueSelecting(ctx, q, "", func(s labels.Selector) bool { return s.Matches(labels.Set(e.Object.GetLabels())) })
}

func (h nodeEvents) Delete(ctx context.Context, e event.DeleteEvent, q queue) {
	h.table.deleteNode(e.Object.GetName())
	h.enqueueSelecting(ctx, q, "", func(s labels.Selector) bool { return s.Matches(labels.Set(e.Object.GetLabels())) })
}

func (h nodeEvents) Update(ctx context.Context, e event.UpdateEvent, q queue) {
	before, after := labels.Set(e.ObjectOld.GetLabels()), labels.Set(e.ObjectNew.GetLabels())
	if maps.Equal(before, after) {
		return // status heartbeats and other changes no selection depends on
	}
	h.table.setNode(e.ObjectNew.GetName(), after)
	h.enqueueSelecting(ctx, q, nodeSelectorSet, func(s labels.Selector) bool { return s.Matches(before) != s.Matches(after) })
}

func (nodeEvents) Generic(context.Context, event.GenericEvent, queue) {}

// enqueueSelecting enqueues the VirtualServices (only those with a nodeSelector when only is
// nodeSelectorSet) whose selector satisfies affected.
func (h nodeEvents) enqueueSelecting(ctx context.Context, q queue, only string, affected func(labels.Selector) bool) {
	var list v1alpha1.VirtualServiceList
	var opts []client.ListOption
	if only != "" {
		opts = append(opts, client.MatchingFields{IndexNodeSelector: only})
	}
	if err := h.c.List(ctx, &list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "listing VirtualServices for a Node event")
		return
	}
	for i := range list.Items {
		vs := &list.Items[i]
		sel := labels.Everything()
		if vs.Spec.NodeSelector != nil {
			var err error
			if sel, err = metav1.LabelSelectorAsSelector(vs.Spec.NodeSelector); err != nil {
				continue // invalid: it selects no node, whatever the node's labels
			}
		}
		if affected(sel) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vs.Namespace, Name: vs.Name}})
		}
	}
}

// ipvsNodeEvents keeps the table's reports and enqueues only the VirtualServices whose entry
// appeared, changed or went away, so that an agent's write about one VirtualService does not
// reconcile every other one on the node.
type ipvsNodeEvents struct{ table *nodeTable }

func (h ipvsNodeEvents) set(q queue, o client.Object, deleted bool) {
	in, ok := o.(*v1alpha1.IPVSNode)
	if !ok {
		return
	}
	var entries []v1alpha1.NodeVirtualService
	if !deleted {
		entries = in.Status.VirtualServices
	}
	for _, k := range h.table.setEntries(in.Name, entries) {
		q.Add(reconcile.Request{NamespacedName: k})
	}
}

func (h ipvsNodeEvents) Create(_ context.Context, e event.CreateEvent, q queue) {
	h.set(q, e.Object, false)
}

func (h ipvsNodeEvents) Update(_ context.Context, e event.UpdateEvent, q queue) {
	h.set(q, e.ObjectNew, false)
}

func (h ipvsNodeEvents) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	h.set(q, e.Object, true)
}

func (ipvsNodeEvents) Generic(context.Context, event.GenericEvent, queue) {}
