package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// Dataplane is the node's networking around IPVS (VIPs bound, the packet filter, source
// NAT) that the reconciler keeps in step with the services it owns: internal/dataplane in
// production, nil for none. It is called from the reconciler's goroutine, Info from any.
type Dataplane interface {
	// Set records an owned service the kernel has.
	Set(k lvs.ServiceKey)
	// Remove forgets a service that is gone.
	Remove(k lvs.ServiceKey)
	// SetLocalPrefixes sets the node's pod CIDRs (destinations there reply through the node).
	SetLocalPrefixes(p []netip.Prefix)
	// Program makes the node so; Audit makes the next Program compare with the kernel.
	Program(ctx context.Context) error
	Audit()
	// Info is what IPVSNode reports, with the last Program's error.
	Info() (v1alpha1.DataplaneInfo, error)
}

// dataplaneSteps tells the dataplane about the services that accepted steps added or
// removed, and programs it when any did or its last program failed. Destination steps are
// nothing to it (what is masqueraded depends on the node's prefixes), so an endpoint change
// costs the dataplane nothing.
func (r *Reconciler) dataplaneSteps(ctx context.Context, steps []Step, results []error) {
	dp := r.cfg.Dataplane
	if dp == nil {
		return
	}
	seen := map[lvs.ServiceKey]bool{}
	for i := range steps {
		if results != nil && results[i] != nil {
			continue
		}
		if op := &steps[i].Op; op.Kind != ipvs.AddService && op.Kind != ipvs.DeleteService &&
			(!steps[i].Forget || op.Destination != nil) {
			continue // a destination's, an update's or the model's own step
		}
		k := steps[i].Op.Service.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		r.dataplaneSet(k)
	}
	if len(seen) > 0 || r.dataplaneDirty {
		r.dataplaneProgram(ctx)
	}
}

func (r *Reconciler) dataplaneSet(k lvs.ServiceKey) {
	o := r.model.services[k]
	if o == nil || !o.Present {
		r.cfg.Dataplane.Remove(k)
		return
	}
	r.cfg.Dataplane.Set(k)
}

func (r *Reconciler) dataplaneProgram(ctx context.Context) {
	err := r.cfg.Dataplane.Program(ctx)
	r.dataplaneDirty = err != nil
	if err != nil {
		r.cfg.Log.Error(err, "programming the dataplane (VIP interface, nftables); retried on the next change or audit")
	}
}

// dataplaneStart gives the dataplane every owned service after the table was adopted, and
// programs it (adopting the interface, its VIP routes and the table that are there).
func (r *Reconciler) dataplaneStart(ctx context.Context) {
	if r.cfg.Dataplane == nil {
		return
	}
	for k := range r.model.services {
		r.dataplaneSet(k)
	}
	r.cfg.Dataplane.Audit()
	r.dataplaneProgram(ctx)
}

// dataplaneAudit compares the dataplane with the kernel and repairs it.
func (r *Reconciler) dataplaneAudit(ctx context.Context) {
	if r.cfg.Dataplane == nil {
		return
	}
	r.cfg.Dataplane.Audit()
	r.dataplaneProgram(ctx)
}

// dataplaneNode passes the node's pod CIDRs on.
func (r *Reconciler) dataplaneNode(n *corev1.Node) {
	if r.cfg.Dataplane == nil {
		return
	}
	var prefixes []netip.Prefix
	for _, c := range n.Spec.PodCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			prefixes = append(prefixes, p.Masked())
		}
	}
	r.cfg.Dataplane.SetLocalPrefixes(prefixes)
	r.dataplaneDirty = true // programmed with the next batch; nothing is sent when nothing changed
}

// dataplaneReport adds the dataplane's state to a report.
func (r *Reconciler) dataplaneReport(rep *NodeReport) {
	if r.cfg.Dataplane == nil {
		return
	}
	info, err := r.cfg.Dataplane.Info()
	rep.Dataplane = &info
	if err != nil {
		rep.DataplaneError = err.Error()
	}
}

// dataplaneCondition sets DataplaneReady in st.
func dataplaneCondition(rep *NodeReport, set func(t string, ok bool, reason, msg string)) {
	switch {
	case rep.Dataplane == nil:
		set(v1alpha1.NodeConditionDataplaneReady, true, "NotManaged", "the agent manages no dataplane on this node")
	case rep.DataplaneError != "":
		set(v1alpha1.NodeConditionDataplaneReady, false, "DataplaneError", truncate(rep.DataplaneError, 1024))
	default:
		set(v1alpha1.NodeConditionDataplaneReady, true, "Programmed", "the VIP interface and the nftables table match the node's IPVS services")
	}
}

// UninstallIPVS deletes the IPVS services the checkpoint says the agent created and that
// the kernel still has (nothing else), then the checkpoint. It returns how many it deleted.
func UninstallIPVS(ctx context.Context, k Kernel, cpf *CheckpointFile) (int, error) {
	cp, err := cpf.Load(time.Now())
	if err != nil {
		return 0, fmt.Errorf("agent: uninstall: %w", err)
	}
	table, err := k.Table(ctx)
	if err != nil {
		return 0, fmt.Errorf("agent: uninstall: read the IPVS table: %w", err)
	}
	present := map[lvs.ServiceKey]bool{}
	for i := range table {
		present[table[i].Key()] = true
	}
	var ops []ipvs.Op
	for _, s := range cp.Services {
		if k := s.Key.Canonical(); present[k] {
			ops = append(ops, ipvs.Op{Kind: ipvs.DeleteService, Service: &lvs.Service{ServiceKey: k}})
		}
	}
	if len(ops) > 0 {
		res, err := k.Apply(ctx, ops)
		var errs []error
		for _, e := range res {
			if e != nil && !errors.Is(e, ipvs.ErrServiceNotFound) {
				errs = append(errs, e)
			}
		}
		if err != nil || len(errs) > 0 {
			return 0, fmt.Errorf("agent: uninstall: delete %d IPVS services: %w", len(ops), errors.Join(append(errs, err)...))
		}
	}
	if err := os.Remove(cpf.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return len(ops), fmt.Errorf("agent: uninstall: %w", err)
	}
	return len(ops), nil
}
