package controllers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// nodeReport is what the selected nodes' IPVSNode objects say about one VirtualService
// generation.
type nodeReport struct {
	selected   int
	programmed int
	failed     []string // "node: reason: message", sorted
	pending    []string // node names, sorted
}

// managedConditions are the condition types the controller owns on VirtualServices.
var managedConditions = []string{
	v1alpha1.ConditionAccepted, v1alpha1.ConditionResolvedRefs, v1alpha1.ConditionProgrammed,
	v1alpha1.ConditionReady, v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled,
}

// computeStatus derives the VirtualService status from the evaluation and node reports. It
// keeps the lastTransitionTime of conditions whose status did not change.
func computeStatus(vs *v1alpha1.VirtualService, ev desired.Evaluation, nr nodeReport, now metav1.Time) v1alpha1.VirtualServiceStatus {
	gen := vs.Generation
	st := v1alpha1.VirtualServiceStatus{
		ObservedGeneration: gen,
		Addresses:          addressSummary(vs),
		Ports:              portSummary(vs),
	}
	eff := ev.Effective
	st.Effective = &eff
	backends := ev.Backends
	st.Backends = &backends
	st.Nodes = &v1alpha1.NodeCounts{
		Selected:   int32(nr.selected),
		Programmed: int32(nr.programmed),
		Failed:     int32(len(nr.failed)),
		Summary:    fmt.Sprintf("%d/%d", nr.programmed, nr.selected),
	}
	for _, c := range vs.Status.Conditions {
		if slices.Contains(managedConditions, c.Type) {
			st.Conditions = append(st.Conditions, c)
		}
	}
	set := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: s, Reason: reason, Message: truncate(msg, 1024), ObservedGeneration: gen, LastTransitionTime: now,
		})
	}

	acc, refs := ev.Accepted, ev.ResolvedRefs
	set(v1alpha1.ConditionAccepted, acc.OK, acc.Reason, acc.Message)
	set(v1alpha1.ConditionResolvedRefs, refs.OK, refs.Reason, refs.Message)
	prog := programmed(acc, nr, gen)
	set(v1alpha1.ConditionProgrammed, prog.OK, prog.Reason, prog.Message)
	r := readiness(acc, refs, prog, ev.Backends, nr)
	set(v1alpha1.ConditionReady, r.OK, r.Reason, r.Message)

	// kstatus: Stalled when progress needs a human, Reconciling while nodes catch up.
	switch {
	case !acc.OK:
		set(v1alpha1.ConditionStalled, true, acc.Reason, acc.Message)
	case !refs.OK:
		set(v1alpha1.ConditionStalled, true, refs.Reason, refs.Message)
	case len(nr.failed) > 0:
		set(v1alpha1.ConditionStalled, true, v1alpha1.ReasonProgrammingFailed, prog.Message)
	default:
		set(v1alpha1.ConditionStalled, false, v1alpha1.ReasonReconciled, "not stalled")
	}
	if acc.OK && refs.OK && len(nr.failed) == 0 && nr.selected > 0 && nr.programmed < nr.selected {
		set(v1alpha1.ConditionReconciling, true, v1alpha1.ReasonProgramming, prog.Message)
	} else {
		set(v1alpha1.ConditionReconciling, false, v1alpha1.ReasonReconciled, "nothing in progress")
	}
	slices.SortFunc(st.Conditions, func(a, b metav1.Condition) int {
		return slices.Index(managedConditions, a.Type) - slices.Index(managedConditions, b.Type)
	})
	return st
}

// programmed is the Programmed condition: what the selected nodes report for generation gen.
func programmed(acc desired.Verdict, nr nodeReport, gen int64) desired.Verdict {
	switch {
	case !acc.OK:
		return desired.Verdict{Reason: v1alpha1.ReasonNotAccepted, Message: "not programmed on any node: the VirtualService is not accepted"}
	case nr.selected == 0:
		return desired.Verdict{Reason: v1alpha1.ReasonNoNodesSelected, Message: "no node matches the nodeSelector"}
	case len(nr.failed) > 0:
		return desired.Verdict{Reason: v1alpha1.ReasonProgrammingFailed,
			Message: fmt.Sprintf("generation %d failed on %d of %d nodes: %s", gen, len(nr.failed), nr.selected, listSome(nr.failed, 3))}
	case nr.programmed == nr.selected:
		return desired.Verdict{OK: true, Reason: v1alpha1.ReasonProgrammed,
			Message: fmt.Sprintf("generation %d programmed on %d/%d nodes", gen, nr.programmed, nr.selected)}
	}
	return desired.Verdict{Reason: v1alpha1.ReasonPending,
		Message: fmt.Sprintf("generation %d programmed on %d/%d nodes; waiting for %s", gen, nr.programmed, nr.selected, listSome(nr.pending, 5))}
}

// readiness is the Ready condition: every other condition, and a backend to send traffic to.
func readiness(acc, refs, prog desired.Verdict, backends v1alpha1.BackendCounts, nr nodeReport) desired.Verdict {
	switch {
	case !acc.OK:
		return desired.Verdict{Reason: v1alpha1.ReasonNotAccepted, Message: acc.Message}
	case !refs.OK:
		return desired.Verdict{Reason: v1alpha1.ReasonRefsNotResolved, Message: refs.Message}
	case !prog.OK:
		return desired.Verdict{Reason: v1alpha1.ReasonNotProgrammed, Message: prog.Message}
	case backends.Ready == 0 && backends.Serving == 0:
		return desired.Verdict{Reason: v1alpha1.ReasonNoReadyBackends, Message: "no backend is ready or serving"}
	}
	return desired.Verdict{OK: true, Reason: v1alpha1.ReasonReady,
		Message: fmt.Sprintf("%d ready backends, programmed on %d/%d nodes", backends.Ready, nr.programmed, nr.selected)}
}

func addressSummary(vs *v1alpha1.VirtualService) string {
	if vs.Spec.FirewallMark != nil {
		return "fwmark:" + strconv.FormatInt(*vs.Spec.FirewallMark, 10)
	}
	return truncate(strings.Join(vs.Spec.Addresses, ","), 128)
}

func portSummary(vs *v1alpha1.VirtualService) string {
	var parts []string
	for i, p := range vs.Spec.Ports {
		if i == 4 {
			parts = append(parts, fmt.Sprintf("+%d more", len(vs.Spec.Ports)-4))
			break
		}
		parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return strings.Join(parts, ",")
}

func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
