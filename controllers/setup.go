package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Metrics are served with authentication and authorization (controller-runtime's filters).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Setup registers the field indexes and every cluster-controller reconciler with mgr. The
// `kubelvs controller` command and the envtest suites both use it, so tests run the wiring
// that ships.
func Setup(ctx context.Context, mgr ctrl.Manager, recorder EventRecorder) error {
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := (&VirtualServiceReconciler{Client: mgr.GetClient(), Recorder: recorder}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the VirtualService controller: %w", err)
	}
	if err := (&BackendPoolReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the BackendPool controller: %w", err)
	}
	return nil
}
