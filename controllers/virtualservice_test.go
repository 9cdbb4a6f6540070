package controllers

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

const (
	T = "True"
	F = "False"
)

func conds(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestBackendTransitions follows backends as they appear, become terminating and disappear,
// with both selected nodes reporting the current generation as programmed.
func TestBackendTransitions(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	nodes := newNodes(t, "backends", 2)
	must(t, k8s.Create(ctx, service(ns, "web", 80)))
	vs := virtualService(ns, "web", "10.10.0.1", "backends", "web")
	must(t, k8s.Create(ctx, vs))
	key := client.ObjectKeyFromObject(vs)

	// No endpoints yet, no node report: accepted, refs resolved, programming pending.
	waitStatus(t, key, expect{
		conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted", v1alpha1.ConditionResolvedRefs, T+"/ResolvedRefs",
			v1alpha1.ConditionProgrammed, F+"/Pending", v1alpha1.ConditionReady, F+"/NotProgrammed",
			v1alpha1.ConditionReconciling, T+"/Programming", v1alpha1.ConditionStalled, F+"/Reconciled"),
		backends: &v1alpha1.BackendCounts{},
		nodes:    "0/2",
		kstatus:  kstatus.InProgressStatus,
		message:  map[string]string{v1alpha1.ConditionProgrammed: "generation 1 programmed on 0/2 nodes; waiting for backends-0, backends-1"},
	})
	for _, n := range nodes {
		report(t, n, key, 1, v1alpha1.StateProgrammed, "", "")
	}
	// Programmed everywhere but nothing to send traffic to: not Ready, so kstatus (which reads
	// Ready when neither Reconciling nor Stalled is True) still says InProgress.
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionProgrammed, T+"/Programmed", v1alpha1.ConditionReady, F+"/NoReadyBackends", v1alpha1.ConditionReconciling, F+"/Reconciled"),
		backends: &v1alpha1.BackendCounts{}, nodes: "2/2", kstatus: kstatus.InProgressStatus,
	})

	// Backends appear.
	es := endpointSlice(ns, "web-1", "web", 80, ready("10.20.0.1"), ready("10.20.0.2"), endpoint{addr: "10.20.0.3"})
	must(t, k8s.Create(ctx, es))
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionReady, T+"/Ready"),
		backends: &v1alpha1.BackendCounts{Total: 3, Ready: 2, Serving: 2},
		kstatus:  kstatus.CurrentStatus,
		message:  map[string]string{v1alpha1.ConditionReady: "2 ready backends, programmed on 2/2 nodes"},
	})

	// One becomes terminating (still serving).
	setEndpoints(es, ready("10.20.0.1"), terminating("10.20.0.2"))
	must(t, k8s.Update(ctx, es))
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionReady, T+"/Ready"),
		backends: &v1alpha1.BackendCounts{Total: 2, Ready: 1, Serving: 2, Terminating: 1},
	})

	// Only the terminating one is left: it still serves (the Kubernetes fallback).
	setEndpoints(es, terminating("10.20.0.2"))
	must(t, k8s.Update(ctx, es))
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionReady, T+"/Ready"),
		backends: &v1alpha1.BackendCounts{Total: 1, Serving: 1, Terminating: 1},
	})

	// All gone.
	must(t, k8s.Delete(ctx, es))
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionReady, F+"/NoReadyBackends"),
		backends: &v1alpha1.BackendCounts{},
	})
}

// TestConflict: the older VirtualService wins an address:port; the newer one is not accepted
// (kstatus Failed) until the older one is deleted.
func TestConflict(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	newNodes(t, "conflict", 1)
	must(t, k8s.Create(ctx, service(ns, "web", 80)))
	// The older one sorts last by name, so only its age can make it win.
	older := virtualService(ns, "zz-older", "10.10.1.1", "conflict", "web")
	must(t, k8s.Create(ctx, older))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	newer := virtualService(ns, "aa-newer", "10.10.1.1", "conflict", "web")
	must(t, k8s.Create(ctx, newer))

	waitStatus(t, client.ObjectKeyFromObject(newer), expect{
		conds: conds(v1alpha1.ConditionAccepted, F+"/Conflicted", v1alpha1.ConditionProgrammed, F+"/NotAccepted",
			v1alpha1.ConditionReady, F+"/NotAccepted", v1alpha1.ConditionStalled, T+"/Conflicted"),
		nodes:   "0/0",
		kstatus: kstatus.FailedStatus,
		message: map[string]string{v1alpha1.ConditionAccepted: fmt.Sprintf("conflicts with the older VirtualService %s/zz-older on 10.10.1.1/80/TCP", ns)},
	})
	waitStatus(t, client.ObjectKeyFromObject(older), expect{
		conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted", v1alpha1.ConditionStalled, F+"/Reconciled"),
		nodes: "0/1",
	})
	eventually(t, "a Conflicted warning event", func() error { return hasEvent(ns, "aa-newer", "Warning", "Conflicted") })

	must(t, k8s.Delete(ctx, older))
	waitStatus(t, client.ObjectKeyFromObject(newer), expect{
		conds:   conds(v1alpha1.ConditionAccepted, T+"/Accepted", v1alpha1.ConditionStalled, F+"/Reconciled", v1alpha1.ConditionReconciling, T+"/Programming"),
		nodes:   "0/1",
		kstatus: kstatus.InProgressStatus,
	})
}

// TestConflictAcrossNamespacesAndKeyChange: a conflict clears when the older object moves to
// another port (an update, not a delete).
func TestConflictClearsOnUpdate(t *testing.T) {
	ctx := context.Background()
	ns1, ns2 := newNamespace(t), newNamespace(t)
	older := virtualService(ns1, "a", "10.10.2.1", "none", "web")
	must(t, k8s.Create(ctx, older))
	time.Sleep(1100 * time.Millisecond)
	newer := virtualService(ns2, "a", "10.10.2.1", "none", "web")
	must(t, k8s.Create(ctx, newer))
	waitStatus(t, client.ObjectKeyFromObject(newer), expect{conds: conds(v1alpha1.ConditionAccepted, F+"/Conflicted")})

	cur := get(t, client.ObjectKeyFromObject(older))
	cur.Spec.Ports[0].Port = 8080
	must(t, k8s.Update(ctx, cur))
	waitStatus(t, client.ObjectKeyFromObject(newer), expect{conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted")})
}

// TestMissingServiceAppearsLater: ResolvedRefs is False (and kstatus Failed) until the Service
// exists.
func TestMissingServiceAppearsLater(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vs := virtualService(ns, "late", "10.10.3.1", "none", "late")
	vs.Spec.BackendRefs = append(vs.Spec.BackendRefs, v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "pool"})
	must(t, k8s.Create(ctx, vs))
	key := client.ObjectKeyFromObject(vs)
	waitStatus(t, key, expect{
		conds:   conds(v1alpha1.ConditionResolvedRefs, F+"/BackendNotFound", v1alpha1.ConditionStalled, T+"/BackendNotFound", v1alpha1.ConditionReady, F+"/RefsNotResolved"),
		kstatus: kstatus.FailedStatus,
		message: map[string]string{v1alpha1.ConditionResolvedRefs: "Service late not found; BackendPool pool not found"},
	})
	must(t, k8s.Create(ctx, service(ns, "late", 81)))
	waitStatus(t, key, expect{
		conds:   conds(v1alpha1.ConditionResolvedRefs, F+"/BackendNotFound"),
		message: map[string]string{v1alpha1.ConditionResolvedRefs: "Service late has no port 80/TCP; BackendPool pool not found"},
	})
	svc := service(ns, "late", 80)
	var cur = service(ns, "late")
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(svc), cur))
	cur.Spec.Ports = svc.Spec.Ports
	must(t, k8s.Update(ctx, cur))
	must(t, k8s.Create(ctx, &v1alpha1.BackendPool{
		ObjectMeta: objMeta(ns, "pool"),
		Spec:       v1alpha1.BackendPoolSpec{Servers: []v1alpha1.RealServer{{Address: "192.0.2.1"}}},
	}))
	waitStatus(t, key, expect{
		conds:    conds(v1alpha1.ConditionResolvedRefs, T+"/ResolvedRefs", v1alpha1.ConditionStalled, F+"/Reconciled"),
		backends: &v1alpha1.BackendCounts{Total: 1, Ready: 1, Serving: 1},
	})
}

// TestNodeReportsAcrossGenerations: a node's report counts only for the current generation;
// a failure stalls the object; kstatus follows.
func TestNodeReportsAcrossGenerations(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	nodes := newNodes(t, "gens", 2)
	must(t, k8s.Create(ctx, service(ns, "web", 80)))
	must(t, k8s.Create(ctx, endpointSlice(ns, "web-1", "web", 80, ready("10.21.0.1"))))
	vs := virtualService(ns, "web", "10.10.4.1", "gens", "web")
	must(t, k8s.Create(ctx, vs))
	key := client.ObjectKeyFromObject(vs)

	report(t, nodes[0], key, 1, v1alpha1.StateProgrammed, "", "")
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, F+"/Pending"), nodes: "1/2", kstatus: kstatus.InProgressStatus})
	report(t, nodes[1], key, 1, v1alpha1.StatePending, "", "")
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, F+"/Pending"), nodes: "1/2", kstatus: kstatus.InProgressStatus})
	report(t, nodes[1], key, 1, v1alpha1.StateProgrammed, "", "")
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, T+"/Programmed", v1alpha1.ConditionReady, T+"/Ready"),
		nodes: "2/2", kstatus: kstatus.CurrentStatus})

	// A new generation: the nodes' reports are for the old one.
	cur := get(t, key)
	cur.Spec.Scheduler = v1alpha1.SchedulerMaglev
	must(t, k8s.Update(ctx, cur))
	if cur.Generation != 2 {
		t.Fatalf("generation %d after a spec change, want 2", cur.Generation)
	}
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, F+"/Pending", v1alpha1.ConditionReady, F+"/NotProgrammed"),
		nodes: "0/2", kstatus: kstatus.InProgressStatus})
	if v := get(t, key); v.Status.Effective == nil || v.Status.Effective.Scheduler != v1alpha1.SchedulerMaglev {
		t.Fatalf("effective settings %+v, want the Maglev scheduler", v.Status.Effective)
	}
	report(t, nodes[0], key, 2, v1alpha1.StateProgrammed, "", "")
	report(t, nodes[1], key, 2, v1alpha1.StateFailed, "SchedulerMissing", "ip_vs_mh is not available")
	waitStatus(t, key, expect{
		conds: conds(v1alpha1.ConditionProgrammed, F+"/ProgrammingFailed", v1alpha1.ConditionStalled, T+"/ProgrammingFailed"),
		nodes: "1/2", kstatus: kstatus.FailedStatus,
		message: map[string]string{v1alpha1.ConditionProgrammed: "generation 2 failed on 1 of 2 nodes: gens-1: SchedulerMissing: ip_vs_mh is not available"},
	})
	report(t, nodes[1], key, 2, v1alpha1.StateProgrammed, "", "")
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, T+"/Programmed", v1alpha1.ConditionReady, T+"/Ready", v1alpha1.ConditionStalled, F+"/Reconciled"),
		nodes: "2/2", kstatus: kstatus.CurrentStatus})

	// A node that stops matching the selector no longer counts.
	var n1 = nodeByName(t, nodes[1])
	n1.Labels["group"] = "elsewhere"
	must(t, k8s.Update(ctx, n1))
	waitStatus(t, key, expect{nodes: "1/1", conds: conds(v1alpha1.ConditionProgrammed, T+"/Programmed")})
}

// TestEndpointSliceChangeReconcilesOnlyReferencingVirtualServices checks the field indexes:
// an EndpointSlice change reconciles the VirtualServices that reference its Service, not the
// others; and a reconcile that changes nothing writes nothing. It waits on the reconciler's
// Observe hook (and a barrier) rather than sleeping before it asserts that something did not
// happen.
func TestEndpointSliceChangeReconcilesOnlyReferencingVirtualServices(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	bar := newBarrier(t, ns)
	must(t, k8s.Create(ctx, service(ns, "x", 80)))
	must(t, k8s.Create(ctx, service(ns, "y", 80)))
	vx := virtualService(ns, "vx", "10.10.5.1", "none", "x")
	vy := virtualService(ns, "vy", "10.10.5.2", "none", "y")
	must(t, k8s.Create(ctx, vx))
	must(t, k8s.Create(ctx, vy))
	kx, ky := client.ObjectKeyFromObject(vx), client.ObjectKeyFromObject(vy)
	waitStatus(t, kx, expect{backends: &v1alpha1.BackendCounts{}})
	waitStatus(t, ky, expect{backends: &v1alpha1.BackendCounts{}})
	bar.pass(t) // every reconcile the creations caused has ended
	beforeX, beforeY := obs.count(kx), obs.count(ky)
	rvY := get(t, ky).ResourceVersion

	es := endpointSlice(ns, "x-1", "x", 80, ready("10.22.0.1"))
	must(t, k8s.Create(ctx, es))
	waitStatus(t, kx, expect{backends: &v1alpha1.BackendCounts{Total: 1, Ready: 1, Serving: 1}})
	bar.pass(t)
	rvX, writesX := get(t, kx).ResourceVersion, obs.written(kx)

	// A change that does not alter the outcome: vx reconciles but writes nothing. Observe
	// runs after the write would have happened, so the count is final once it is seen.
	beforeLabel := obs.count(kx)
	es.Labels["unrelated"] = "label"
	must(t, k8s.Update(ctx, es))
	obs.waitCount(t, kx, beforeLabel)
	bar.pass(t) // and any other reconcile the change caused
	if got := obs.written(kx); got != writesX {
		t.Errorf("vx status was applied %d times although it did not change", got-writesX)
	}
	if got := get(t, kx).ResourceVersion; got != rvX {
		t.Errorf("vx changed although its status did not (resourceVersion %s -> %s)", rvX, got)
	}
	if obs.count(kx) <= beforeX {
		t.Errorf("vx was not reconciled after its EndpointSlice changed")
	}
	if got := obs.count(ky); got != beforeY {
		t.Errorf("vy was reconciled %d times after an EndpointSlice of another Service changed", got-beforeY)
	}
	if got := get(t, ky).ResourceVersion; got != rvY {
		t.Errorf("vy was written (resourceVersion %s -> %s)", rvY, got)
	}
}

// TestNodeLabelChangeReconcilesOnlyAffectedVirtualServices: a Node label change reconciles
// the VirtualServices whose selection of the node it changes, and no other (neither those
// without a nodeSelector, which select every node whatever its labels, nor those whose
// selector gives the same answer before and after); a new Node reconciles those that
// select it.
func TestNodeLabelChangeReconcilesOnlyAffectedVirtualServices(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	bar := newBarrier(t, ns)
	nodes := newNodes(t, "relabel-a", 1)
	all := virtualService(ns, "all", "10.10.8.1", "unused", "web")
	all.Spec.NodeSelector = nil
	inA := virtualService(ns, "in-a", "10.10.8.2", "relabel-a", "web")
	inB := virtualService(ns, "in-b", "10.10.8.3", "relabel-b", "web")
	other := virtualService(ns, "other", "10.10.8.4", "relabel-other", "web")
	for _, vs := range []*v1alpha1.VirtualService{all, inA, inB, other} {
		must(t, k8s.Create(ctx, vs))
	}
	waitStatus(t, client.ObjectKeyFromObject(inA), expect{nodes: "0/1"})
	waitStatus(t, client.ObjectKeyFromObject(inB), expect{nodes: "0/0"})
	bar.pass(t)
	count := func() map[string]int {
		out := map[string]int{}
		for _, vs := range []*v1alpha1.VirtualService{all, inA, inB, other} {
			out[vs.Name] = obs.count(client.ObjectKeyFromObject(vs))
		}
		return out
	}
	before := count()

	n := nodeByName(t, nodes[0])
	n.Labels["group"] = "relabel-b"
	must(t, k8s.Update(ctx, n))
	waitStatus(t, client.ObjectKeyFromObject(inB), expect{nodes: "0/1"})
	waitStatus(t, client.ObjectKeyFromObject(inA), expect{nodes: "0/0"})
	bar.pass(t)
	after := count()
	for name, want := range map[string]bool{"all": false, "in-a": true, "in-b": true, "other": false} {
		if got := after[name] > before[name]; got != want {
			t.Errorf("%s reconciled %d times after the label change; want reconciled: %v", name, after[name]-before[name], want)
		}
	}

	// A label no selector reads still changes nothing selectable, yet only VirtualServices
	// with a selector are examined; none of them changes its verdict.
	before = after
	n = nodeByName(t, nodes[0])
	n.Labels["unrelated"] = "x"
	must(t, k8s.Update(ctx, n))
	bar.pass(t)
	if after = count(); !maps.Equal(after, before) {
		t.Errorf("an unrelated label reconciled VirtualServices: %v -> %v", before, after)
	}

	// A new node: those that select it (all, and in-b: same group).
	before = after
	newNodes(t, "relabel-b", 1)
	waitStatus(t, client.ObjectKeyFromObject(inB), expect{nodes: "0/2"})
	bar.pass(t)
	after = count()
	for name, want := range map[string]bool{"all": true, "in-a": false, "in-b": true, "other": false} {
		if got := after[name] > before[name]; got != want {
			t.Errorf("%s reconciled %d times after a node was created; want reconciled: %v", name, after[name]-before[name], want)
		}
	}
}

// TestStatusIsServerSideAppliedByTheController checks the field owner of the status.
func TestStatusIsServerSideAppliedByTheController(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vs := virtualService(ns, "ssa", "10.10.6.1", "none", "web")
	must(t, k8s.Create(ctx, vs))
	key := client.ObjectKeyFromObject(vs)
	v := waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionAccepted, T+"/Accepted")})
	var found bool
	for _, mf := range v.ManagedFields {
		if mf.Manager == FieldOwner && mf.Operation == "Apply" && mf.Subresource == "status" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no status Apply entry by %q in managedFields: %+v", FieldOwner, v.ManagedFields)
	}
	if v.Spec.Scheduler != "" || v.Spec.Forwarding != nil || v.Spec.TrafficPolicy != "" {
		t.Fatalf("spec was defaulted: %+v", v.Spec)
	}
	if v.Status.Effective == nil || v.Status.Effective.Scheduler != "WeightedRoundRobin" || v.Status.Effective.DrainTimeoutSeconds != 60 {
		t.Fatalf("effective settings %+v, want the defaults", v.Status.Effective)
	}
	if v.Status.Addresses != "10.10.6.1" || v.Status.Ports != "80/TCP" {
		t.Fatalf("display fields %q %q", v.Status.Addresses, v.Status.Ports)
	}
}

// TestBackendPoolStatus counts servers and references.
func TestBackendPoolStatus(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := &v1alpha1.BackendPool{ObjectMeta: objMeta(ns, "ext"), Spec: v1alpha1.BackendPoolSpec{Servers: []v1alpha1.RealServer{
		{Address: "192.0.2.1"}, {Address: "192.0.2.2", Enabled: boolPtr(false)}, {Address: "2001:db8::1"},
	}}}
	must(t, k8s.Create(ctx, p))
	check := func(servers, enabled, refs int32) {
		t.Helper()
		eventually(t, "BackendPool status", func() error {
			var got v1alpha1.BackendPool
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			s := got.Status
			if s.ObservedGeneration != got.Generation || s.Servers != servers || s.Enabled != enabled || s.ReferencedBy != refs {
				return fmt.Errorf("status %+v, want %d servers, %d enabled, %d references", s, servers, enabled, refs)
			}
			return nil
		})
	}
	check(3, 2, 0)
	vs := virtualService(ns, "uses-pool", "10.10.7.1", "none")
	vs.Spec.BackendRefs = []v1alpha1.BackendRef{{Kind: v1alpha1.BackendKindBackendPool, Name: "ext"}}
	must(t, k8s.Create(ctx, vs))
	check(3, 2, 1)
	waitStatus(t, client.ObjectKeyFromObject(vs), expect{backends: &v1alpha1.BackendCounts{Total: 3, Ready: 2, Serving: 2, Terminating: 1}})
	must(t, k8s.Delete(ctx, vs))
	check(3, 2, 0)
}

func hasEvent(ns, name, typ, reason string) error {
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var seen []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Type == typ && e.Reason == reason {
			return nil
		}
		seen = append(seen, e.Regarding.Name+":"+e.Type+":"+e.Reason)
	}
	return fmt.Errorf("no %s %s event for %s; have %s", typ, reason, name, strings.Join(seen, ", "))
}

func objMeta(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func boolPtr(b bool) *bool { return &b }

func nodeByName(t *testing.T, name string) *corev1.Node {
	t.Helper()
	var n corev1.Node
	must(t, k8s.Get(context.Background(), types.NamespacedName{Name: name}, &n))
	return &n
}
