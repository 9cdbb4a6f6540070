package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Metrics are served with authentication and authorization (controller-runtime's filters).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Options configure Setup.
type Options struct {
	// Recorder records events on VirtualServices; none when nil.
	Recorder EventRecorder
	// Observe, when set, is called at the end of every VirtualService reconcile with whether
	// it wrote status (tests use it to see which objects a watch event reconciles).
	Observe func(key types.NamespacedName, wrote bool)
	// AgentLeaseNamespace is where the agents renew their Leases (default
	// DefaultAgentLeaseNamespace): a node whose Lease expired counts as not programmed.
	AgentLeaseNamespace string
}

// Setup registers the field indexes and every cluster-controller reconciler with mgr. The
// `kubelvs controller` command and the envtest suites both use it, so tests run the wiring
// that ships.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	vsr := &VirtualServiceReconciler{Client: mgr.GetClient(), Recorder: opts.Recorder, Observe: opts.Observe,
		AgentLeaseNamespace: opts.AgentLeaseNamespace}
	if err := vsr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the VirtualService controller: %w", err)
	}
	if err := (&BackendPoolReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the BackendPool controller: %w", err)
	}
	return nil
}
