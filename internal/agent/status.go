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

// reportCache keeps the report's entries between reports and rebuilds only those of the
// VirtualServices that changed since the last one (and all of them after an adoption or an
// audit): rebuilding every entry once a second while endpoints churn cost the loop time in
// proportion to the node's table, and a change arriving meanwhile waited for it. The entries
// are kept sorted in a slice that a report hands out as it is (looking 10,000 entries up in a
// map to assemble each report was most of a report's time); once handed out it is copied
// before it changes, and a report without changes copies nothing.
type reportCache struct {
	all       bool // rebuild every entry
	dirty     map[types.NamespacedName]struct{}
	keys      []types.NamespacedName            // the keys of the entries, sorted
	list      []v1alpha1.NodeVirtualService     // the entries, in the order of keys
	shared    bool                              // list is in a report: copy it before a change
	active    int32                             // entries not draining
	conflicts map[types.NamespacedName][]string // "VirtualService: key" of the entries that have any
}

// own makes list the cache's own before a change.
func (rc *reportCache) own() {
	if rc.shared {
		rc.list = slices.Clone(rc.list)
		rc.shared = false
	}
}

func countsActive(e *v1alpha1.NodeVirtualService) int32 {
	if e.State != v1alpha1.StateDraining {
		return 1
	}
	return 0
}

// reportChanged marks a VirtualService's entry for the next report (reconciler goroutine).
func (r *Reconciler) reportChanged(k types.NamespacedName) {
	if r.report.dirty == nil {
		r.report.dirty = map[types.NamespacedName]struct{}{}
	}
	r.report.dirty[k] = struct{}{}
}

// Report returns the node's report, entries sorted by namespace and name. Call it from the
// reconciler's goroutine.
func (r *Reconciler) Report() NodeReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := &r.report
	if rc.conflicts == nil {
		rc.conflicts, rc.all = map[types.NamespacedName][]string{}, true
	}
	if rc.all {
		for k := range r.states {
			r.reportChanged(k)
		}
		for _, k := range r.model.Owners() {
			r.reportChanged(k)
		}
		for _, k := range rc.keys {
			r.reportChanged(k)
		}
		rc.all = false
	}
	for k := range rc.dirty {
		r.refreshEntry(k)
	}
	clear(rc.dirty)
	rep := NodeReport{VirtualServices: rc.list}
	rc.shared = true
	rep.Counts.VirtualServices = rc.active
	if r.checkpointErr != nil {
		rep.CheckpointError = r.checkpointErr.Error()
	}
	if len(rc.conflicts) > 0 {
		conflicted := slices.Collect(maps.Keys(rc.conflicts))
		slices.SortFunc(conflicted, compareNames)
		for _, k := range conflicted {
			rep.Conflicts = append(rep.Conflicts, rc.conflicts[k]...)
		}
	}
	r.dataplaneReport(&rep)
	svcs, dests := r.model.Counts()
	rep.Counts.Services, rep.Counts.Destinations = int32(svcs), int32(dests)
	return rep
}

// refreshEntry rebuilds k's entry, or drops it when k has nothing on the node any more.
func (r *Reconciler) refreshEntry(k types.NamespacedName) {
	rc := &r.report
	st := r.states[k]
	owns := len(r.model.byOwner[k]) > 0
	if st != nil && st.services == 0 && !owns {
		delete(r.states, k) // drained and gone
		st = nil
	}
	i, found := slices.BinarySearchFunc(rc.keys, k, compareNames)
	if st == nil && !owns {
		delete(rc.conflicts, k)
		if found {
			rc.own()
			rc.active -= countsActive(&rc.list[i])
			rc.keys = slices.Delete(rc.keys, i, i+1)
			rc.list = slices.Delete(rc.list, i, i+1)
		}
		return
	}
	var conflicts NodeReport
	e := r.entry(k, st, &conflicts)
	if len(conflicts.Conflicts) > 0 {
		rc.conflicts[k] = conflicts.Conflicts
	} else {
		delete(rc.conflicts, k)
	}
	rc.own()
	if found {
		rc.active += countsActive(&e) - countsActive(&rc.list[i])
		rc.list[i] = e
		return
	}
	rc.active += countsActive(&e)
	rc.keys = slices.Insert(rc.keys, i, k)
	rc.list = slices.Insert(rc.list, i, e)
}

func (r *Reconciler) entry(k types.NamespacedName, st *vsState, rep *NodeReport) v1alpha1.NodeVirtualService {
	e := v1alpha1.NodeVirtualService{Namespace: k.Namespace, Name: k.Name}
	var counts v1alpha1.RealServerCounts
	for _, sk := range r.model.KeysOf(k) {
		o := r.model.services[sk]
		if o.Generation > e.ObservedGeneration {
			e.ObservedGeneration = o.Generation
		}
		for i := range o.Dests {
			if o.Dests[i].Draining() || o.Removing {
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
