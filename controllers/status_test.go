package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// TestComputeStatus covers the condition rules without an API server.
func TestComputeStatus(t *testing.T) {
	ok := desired.Verdict{OK: true, Reason: "Accepted", Message: "valid"}
	refsOK := desired.Verdict{OK: true, Reason: "ResolvedRefs", Message: "all"}
	some := v1alpha1.BackendCounts{Total: 2, Ready: 2, Serving: 2}
	tests := []struct {
		name     string
		acc      desired.Verdict
		refs     desired.Verdict
		backends v1alpha1.BackendCounts
		nodes    nodeReport
		want     map[string]string // type -> Status/Reason: message
	}{{
		name: "conflicted", acc: desired.Verdict{Reason: "Conflicted", Message: "conflicts with x"}, refs: refsOK,
		want: map[string]string{
			"Accepted": "False/Conflicted: conflicts with x", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed": "False/NotAccepted: not programmed on any node: the VirtualService is not accepted",
			"Ready":      "False/NotAccepted: conflicts with x", "Reconciling": "False/Reconciled: nothing in progress",
			"Stalled": "True/Conflicted: conflicts with x",
		},
	}, {
		name: "missing backend", acc: ok, refs: desired.Verdict{Reason: "BackendNotFound", Message: "Service a not found"},
		nodes: nodeReport{selected: 1, programmed: 1},
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "False/BackendNotFound: Service a not found",
			"Programmed": "True/Programmed: generation 3 programmed on 1/1 nodes",
			"Ready":      "False/RefsNotResolved: Service a not found", "Reconciling": "False/Reconciled: nothing in progress",
			"Stalled": "True/BackendNotFound: Service a not found",
		},
	}, {
		name: "no node selected", acc: ok, refs: refsOK, backends: some,
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed": "False/NoNodesSelected: no node matches the nodeSelector",
			"Ready":      "False/NotProgrammed: no node matches the nodeSelector", "Reconciling": "False/Reconciled: nothing in progress",
			"Stalled": "False/Reconciled: not stalled",
		},
	}, {
		name: "pending on some nodes", acc: ok, refs: refsOK, backends: some,
		nodes: nodeReport{selected: 8, programmed: 1, pending: []string{"a", "b", "c", "d", "e", "f", "g"}},
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed":  "False/Pending: generation 3 programmed on 1/8 nodes; waiting for a, b, c, d, e and 2 more",
			"Ready":       "False/NotProgrammed: generation 3 programmed on 1/8 nodes; waiting for a, b, c, d, e and 2 more",
			"Reconciling": "True/Programming: generation 3 programmed on 1/8 nodes; waiting for a, b, c, d, e and 2 more",
			"Stalled":     "False/Reconciled: not stalled",
		},
	}, {
		name: "failed on a node", acc: ok, refs: refsOK, backends: some,
		nodes: nodeReport{selected: 2, programmed: 1, failed: []string{"b: E: boom"}},
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed":  "False/ProgrammingFailed: generation 3 failed on 1 of 2 nodes: b: E: boom",
			"Ready":       "False/NotProgrammed: generation 3 failed on 1 of 2 nodes: b: E: boom",
			"Reconciling": "False/Reconciled: nothing in progress",
			"Stalled":     "True/ProgrammingFailed: generation 3 failed on 1 of 2 nodes: b: E: boom",
		},
	}, {
		name: "programmed, no backend", acc: ok, refs: refsOK, nodes: nodeReport{selected: 2, programmed: 2},
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed": "True/Programmed: generation 3 programmed on 2/2 nodes",
			"Ready":      "False/NoReadyBackends: no backend is ready or serving", "Reconciling": "False/Reconciled: nothing in progress",
			"Stalled": "False/Reconciled: not stalled",
		},
	}, {
		name: "ready", acc: ok, refs: refsOK, backends: some, nodes: nodeReport{selected: 2, programmed: 2},
		want: map[string]string{
			"Accepted": "True/Accepted: valid", "ResolvedRefs": "True/ResolvedRefs: all",
			"Programmed": "True/Programmed: generation 3 programmed on 2/2 nodes",
			"Ready":      "True/Ready: 2 ready backends, programmed on 2/2 nodes", "Reconciling": "False/Reconciled: nothing in progress",
			"Stalled": "False/Reconciled: not stalled",
		},
	}}
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			st := computeStatus(vs, desired.Evaluation{Accepted: tt.acc, ResolvedRefs: tt.refs, Backends: tt.backends}, tt.nodes, now)
			got := map[string]string{}
			for _, c := range st.Conditions {
				got[c.Type] = string(c.Status) + "/" + c.Reason + ": " + c.Message
				if c.ObservedGeneration != 3 {
					t.Errorf("condition %s observedGeneration %d, want 3", c.Type, c.ObservedGeneration)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if st.ObservedGeneration != 3 || *st.Backends != tt.backends || st.Nodes.Selected != int32(tt.nodes.selected) {
				t.Errorf("status %+v", st)
			}
		})
	}
}

// TestComputeStatusKeepsTransitionTimes: a condition whose status does not change keeps its
// lastTransitionTime, so an unchanged object is not rewritten.
func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	t1 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t2 := metav1.NewTime(t1.Add(time.Hour))
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	ev := desired.Evaluation{Accepted: desired.Verdict{OK: true, Reason: "Accepted"}, ResolvedRefs: desired.Verdict{OK: true, Reason: "ResolvedRefs"}}
	vs.Status = computeStatus(vs, ev, nodeReport{selected: 1}, t1)
	again := computeStatus(vs, ev, nodeReport{selected: 1}, t2)
	if diff := cmp.Diff(vs.Status, again); diff != "" {
		t.Fatalf("recomputing an unchanged status changed it (-first +second):\n%s", diff)
	}
	changed := computeStatus(vs, ev, nodeReport{selected: 1, programmed: 1}, t2)
	for _, c := range changed.Conditions {
		want := t1
		if c.Type == v1alpha1.ConditionProgrammed || c.Type == v1alpha1.ConditionReconciling {
			want = t2
		}
		if !c.LastTransitionTime.Equal(&want) {
			t.Errorf("%s lastTransitionTime %v, want %v", c.Type, c.LastTransitionTime, want)
		}
	}
}

func TestPortSummary(t *testing.T) {
	vs := &v1alpha1.VirtualService{}
	for p := range int32(6) {
		vs.Spec.Ports = append(vs.Spec.Ports, v1alpha1.VirtualServicePort{Port: 80 + p, Protocol: v1alpha1.ProtocolTCP})
	}
	if got, want := portSummary(vs), "80/TCP,81/TCP,82/TCP,83/TCP,+2 more"; got != want {
		t.Fatalf("portSummary = %q, want %q", got, want)
	}
}
