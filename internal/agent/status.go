package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// NodeReport is what the reconciler knows for its node's IPVSNode status.
type NodeReport struct {
	VirtualServices []v1alpha1.NodeVirtualService
	Counts          v1alpha1.IPVSCounts
	// Conflicts lists "VirtualService: key" for each desired service another owner has.
	Conflicts []string
	// CheckpointError is the last checkpoint problem, "" when none.
	CheckpointError string
	// Dataplane and DataplaneError: the dataplane's state and last error (nil: no dataplane).
	Dataplane      *v1alpha1.DataplaneInfo
	DataplaneError string
}

// Report returns the node's report, entries sorted by namespace and name. Call it from the
// reconciler's goroutine.
func (r *Reconciler) Report() NodeReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := map[types.NamespacedName]bool{}
	for k, st := range r.states {
		if st.services == 0 && len(r.model.KeysOf(k)) == 0 {
			delete(r.states, k) // drained and gone
			continue
		}
		keys[k] = true
	}
	for _, k := range r.model.Owners() {
		keys[k] = true
	}
	var rep NodeReport
	if r.checkpointErr != nil {
		rep.CheckpointError = r.checkpointErr.Error()
	}
	sorted := slices.Collect(maps.Keys(keys))
	slices.SortFunc(sorted, compareNames)
	for _, k := range sorted {
		e := r.entry(k, r.states[k], &rep)
		rep.VirtualServices = append(rep.VirtualServices, e)
		if e.State != v1alpha1.StateDraining {
			rep.Counts.VirtualServices++
		}
	}
	r.dataplaneReport(&rep)
	svcs, dests := r.model.Counts()
	rep.Counts.Services, rep.Counts.Destinations = int32(svcs), int32(dests)
	return rep
}

func (r *Reconciler) entry(k types.NamespacedName, st *vsState, rep *NodeReport) v1alpha1.NodeVirtualService {
	e := v1alpha1.NodeVirtualService{Namespace: k.Namespace, Name: k.Name}
	var counts v1alpha1.RealServerCounts
	for _, sk := range r.model.KeysOf(k) {
		o := r.model.services[sk]
		if o.Generation > e.ObservedGeneration {
			e.ObservedGeneration = o.Generation
		}
		for _, d := range o.Dests {
			if d.Draining() || o.Removing {
				counts.Draining++
			} else {
				counts.Active++
			}
		}
	}
	e.RealServers = &counts
	if st == nil {
		e.State, e.Reason, e.Message = v1alpha1.StateDraining, "Draining", "no longer selected for this node; its real servers drain before removal"
		return e
	}
	e.ObservedGeneration = st.generation
	var conflicts, unmanaged []string
	for _, f := range st.refused {
		if f.Reason == ReasonConflict {
			conflicts = append(conflicts, f.Key.String())
			rep.Conflicts = append(rep.Conflicts, k.String()+": "+f.Key.String())
		} else {
			unmanaged = append(unmanaged, f.Message)
		}
	}
	switch {
	case len(conflicts) > 0:
		e.State, e.Reason = v1alpha1.StateFailed, ReasonConflict
		e.Message = "the node's IPVS table has services kubelvs did not create on " + strings.Join(conflicts, ", ")
	case len(unmanaged) > 0:
		e.State, e.Reason, e.Message = v1alpha1.StateFailed, ReasonUnmanaged, strings.Join(unmanaged, "; ")
	case len(st.failed) > 0:
		e.State, e.Reason = v1alpha1.StateFailed, v1alpha1.ReasonProgrammingFailed
		e.Message = fmt.Sprintf("%d IPVS operations failed; first: %s", len(st.failed), st.failed[0])
	case st.services == 0:
		e.State, e.Reason, e.Message = v1alpha1.StateDraining, "Draining", "no longer selected for this node; its real servers drain before removal"
	case st.programmed:
		e.State = v1alpha1.StateProgrammed // no reason or message: see IPVSNodeStatus.VirtualServices
	default:
		e.State, e.Reason, e.Message = v1alpha1.StatePending, v1alpha1.ReasonPending, "not programmed yet"
	}
	if len(e.Message) > 1024 {
		e.Message = e.Message[:1021] + "..."
	}
	return e
}
