package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// BackendPoolReconciler writes BackendPool status: server counts, how many VirtualServices
// reference the pool, and an Accepted condition.
type BackendPoolReconciler struct {
	Client client.Client
}

// Reconcile computes and, when it changed, applies the status of one BackendPool.
func (r *BackendPoolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var p v1alpha1.BackendPool
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	refs, err := listByIndex(ctx, r.Client, IndexPoolRef, p.Name, p.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	st := v1alpha1.BackendPoolStatus{
		ObservedGeneration: p.Generation,
		Servers:            int32(len(p.Spec.Servers)),
		ReferencedBy:       int32(len(refs)),
	}
	for _, s := range p.Spec.Servers {
		if s.Enabled == nil || *s.Enabled {
			st.Enabled++
		}
	}
	st.Conditions = append(st.Conditions, p.Status.Conditions...)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValidServers,
		Message:            fmt.Sprintf("%d servers, %d enabled", st.Servers, st.Enabled),
		ObservedGeneration: p.Generation, LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
	})
	if equality.Semantic.DeepEqual(p.Status, st) {
		reconcileSkips.WithLabelValues("BackendPool").Inc()
		return reconcile.Result{}, nil
	}
	if err := applyStatus(ctx, r.Client, &v1alpha1.BackendPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "BackendPool"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		Status:     st,
	}); err != nil {
		return reconcile.Result{}, err
	}
	statusWrites.WithLabelValues("BackendPool").Inc()
	return reconcile.Result{}, nil
}

// SetupWithManager registers the reconciler and its watches. SetupIndexes must have run.
func (r *BackendPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// A VirtualService that starts or stops referencing a pool changes the pool's referencedBy.
	poolsOf := func(objs ...client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, o := range objs {
			for _, n := range refNames(o, v1alpha1.BackendKindBackendPool) {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: n}})
			}
		}
		return out
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("backendpool").
		For(&v1alpha1.BackendPool{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.VirtualService{}, handler.Funcs{
			CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) { addAll(q, poolsOf(e.Object)) },
			UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
				if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
					addAll(q, poolsOf(e.ObjectOld, e.ObjectNew))
				}
			},
			DeleteFunc: func(_ context.Context, e event.DeleteEvent, q queue) { addAll(q, poolsOf(e.Object)) },
		}).
		Complete(r)
}

func addAll(q queue, reqs []reconcile.Request) {
	for _, r := range reqs {
		q.Add(r)
	}
}
