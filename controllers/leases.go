package controllers

import (
	"context"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// AgentLeasePrefix names the Lease each node's agent renews: kubelvs-agent-<node>.
const AgentLeasePrefix = "kubelvs-agent-"

// DefaultAgentLeaseNamespace is where the agents' Leases are (the agent's --lease-namespace).
const DefaultAgentLeaseNamespace = "kubelvs-system"

// leaseExpiry is when a Lease runs out: its renew time plus its duration; false when it does
// not say.
func leaseExpiry(l *coordinationv1.Lease) (time.Time, bool) {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return time.Time{}, false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second), true
}

// setLease records when node's agent Lease expires (zero: no Lease) and reports whether the
// node's liveness changed as of now.
func (t *nodeTable) setLease(node string, expiry, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.leases[node]
	wasAlive := !had || now.Before(old)
	if expiry.IsZero() {
		delete(t.leases, node)
	} else {
		t.leases[node] = expiry
	}
	return wasAlive != (expiry.IsZero() || now.Before(expiry))
}

// expired reports whether node's agent Lease has run out at now (a node without a Lease is
// not: its agent may predate Leases, and without entries it is pending anyway). Callers hold
// t.mu.
func (t *nodeTable) expiredLocked(node string, now time.Time) bool {
	exp, ok := t.leases[node]
	return ok && !now.Before(exp)
}

// reported returns the VirtualServices node's IPVSNode has entries for.
func (t *nodeTable) reported(node string) []types.NamespacedName {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []types.NamespacedName
	for k, byNode := range t.reports {
		if _, ok := byNode[node]; ok {
			out = append(out, k)
		}
	}
	return out
}

// leaseEvents keeps the agents' Lease expiries in the table. A Lease that stops being renewed
// causes no event when it runs out, so each renewal also arms a timer for its expiry; when a
// node's liveness changes, the VirtualServices it reports on are reconciled.
type leaseEvents struct {
	namespace string
	table     *nodeTable
	now       func() time.Time
}

func (h leaseEvents) node(l *coordinationv1.Lease) (string, bool) {
	if l.Namespace != h.namespace || !strings.HasPrefix(l.Name, AgentLeasePrefix) {
		return "", false
	}
	return strings.TrimPrefix(l.Name, AgentLeasePrefix), true
}

func (h leaseEvents) set(q queue, o any, deleted bool) {
	l, ok := o.(*coordinationv1.Lease)
	if !ok {
		return
	}
	node, ok := h.node(l)
	if !ok {
		return
	}
	var exp time.Time
	if !deleted {
		exp, _ = leaseExpiry(l)
	}
	now := h.now()
	if h.table.setLease(node, exp, now) {
		h.enqueue(q, node)
	}
	if !exp.IsZero() && now.Before(exp) {
		time.AfterFunc(exp.Sub(now)+10*time.Millisecond, func() {
			h.table.mu.RLock()
			cur, still := h.table.leases[node]
			h.table.mu.RUnlock()
			if still && cur.Equal(exp) { // not renewed since: it just ran out
				h.enqueue(q, node)
			}
		})
	}
}

func (h leaseEvents) enqueue(q queue, node string) {
	for _, k := range h.table.reported(node) {
		q.Add(reconcile.Request{NamespacedName: k})
	}
}

func (h leaseEvents) Create(_ context.Context, e event.CreateEvent, q queue) {
	h.set(q, e.Object, false)
}
func (h leaseEvents) Update(_ context.Context, e event.UpdateEvent, q queue) {
	h.set(q, e.ObjectNew, false)
}
func (h leaseEvents) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	h.set(q, e.Object, true)
}
func (leaseEvents) Generic(context.Context, event.GenericEvent, queue) {}
