package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/pkg/desired"
)

// FieldOwner is the server-side apply field manager of everything the controller writes.
const FieldOwner = "kubelvs-controller"

// maxConflictComponent bounds how many VirtualServices one reconcile reads to resolve
// conflicts (the VirtualServices reachable through shared address:port/protocol keys).
const maxConflictComponent = 1000

var statusWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubelvs_controller_status_writes_total",
	Help: "Status writes (server-side apply) by the kubelvs controller, by kind.",
}, []string{"kind"})

var reconcileSkips = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubelvs_controller_status_unchanged_total",
	Help: "Reconciles that found the status already up to date and wrote nothing, by kind.",
}, []string{"kind"})

func init() {
	crmetrics.Registry.MustRegister(statusWrites, reconcileSkips)
}

// EventRecorder is the part of an events.k8s.io recorder the reconcilers use.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// VirtualServiceReconciler writes VirtualService status: Accepted, ResolvedRefs, Programmed,
// Ready, Reconciling and Stalled conditions, backend and node counts, effective settings.
// Its node counts come from a table that the watches of SetupWithManager feed: use it through
// SetupWithManager (Setup), not bare.
type VirtualServiceReconciler struct {
	Client   client.Client
	Recorder EventRecorder
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// Observe, when set, is called at the end of every reconcile with whether it wrote status.
	Observe func(key types.NamespacedName, wrote bool)
	// AgentLeaseNamespace is where the agents' Leases are (DefaultAgentLeaseNamespace when
	// empty).
	AgentLeaseNamespace string

	// nodes is fed by the Node, IPVSNode and Lease watches (SetupWithManager).
	nodes *nodeTable
}

// +kubebuilder:rbac:groups=kubelvs.io,resources=virtualservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=kubelvs-system,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubelvs.io,resources=virtualservices/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=kubelvs.io,resources=backendpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubelvs.io,resources=backendpools/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=kubelvs.io,resources=ipvsnodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile computes and, when it changed, applies the status of one VirtualService.
func (r *VirtualServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	wrote := false
	if r.Observe != nil {
		defer func() { r.Observe(req.NamespacedName, wrote) }()
	}
	var vs v1alpha1.VirtualService
	if err := r.Client.Get(ctx, req.NamespacedName, &vs); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !vs.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	cluster, err := r.gather(ctx, &vs)
	if err != nil {
		return reconcile.Result{}, err
	}
	model := desired.NewModel(cluster)
	ev, _ := model.Evaluate(req.NamespacedName)
	nr := r.nodes.report(model, req.NamespacedName, vs.Generation)
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	st := computeStatus(&vs, ev, nr, metav1.NewTime(now().Truncate(time.Second)))
	if equality.Semantic.DeepEqual(vs.Status, st) {
		reconcileSkips.WithLabelValues("VirtualService").Inc()
		return reconcile.Result{}, nil
	}
	if err := applyStatus(ctx, r.Client, &v1alpha1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "VirtualService"},
		ObjectMeta: metav1.ObjectMeta{Name: vs.Name, Namespace: vs.Namespace},
		Status:     st,
	}); err != nil {
		return reconcile.Result{}, err
	}
	wrote = true
	statusWrites.WithLabelValues("VirtualService").Inc()
	r.events(&vs, vs.Status.Conditions, st.Conditions)
	logger.V(1).Info("status updated", "ready", condStatus(st.Conditions, v1alpha1.ConditionReady), "nodes", st.Nodes.Summary)
	return reconcile.Result{}, nil
}

func condStatus(conds []metav1.Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return string(c.Status)
		}
	}
	return ""
}

// events records an event for each transition of Accepted, ResolvedRefs, Programmed and Ready.
func (r *VirtualServiceReconciler) events(vs *v1alpha1.VirtualService, before, after []metav1.Condition) {
	if r.Recorder == nil {
		return
	}
	for _, typ := range []string{v1alpha1.ConditionAccepted, v1alpha1.ConditionResolvedRefs, v1alpha1.ConditionProgrammed, v1alpha1.ConditionReady} {
		var old *metav1.Condition
		for i := range before {
			if before[i].Type == typ {
				old = &before[i]
			}
		}
		var cur *metav1.Condition
		for i := range after {
			if after[i].Type == typ {
				cur = &after[i]
			}
		}
		if cur == nil || old != nil && old.Status == cur.Status && old.Reason == cur.Reason {
			continue
		}
		if old == nil && cur.Status == metav1.ConditionTrue && typ != v1alpha1.ConditionReady {
			continue // the first status: report only problems and readiness
		}
		kind := corev1.EventTypeNormal
		if cur.Status != metav1.ConditionTrue {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(vs, nil, kind, cur.Reason, typ, "%s", truncate(fmt.Sprintf("%s=%s: %s", typ, cur.Status, cur.Message), 1000))
	}
}

// gather reads what the evaluation of vs needs: vs and the VirtualServices it may conflict
// with (transitively, through shared keys), its Services and their EndpointSlices, its
// BackendPools.
func (r *VirtualServiceReconciler) gather(ctx context.Context, vs *v1alpha1.VirtualService) (*desired.Cluster, error) {
	c := &desired.Cluster{}
	var err error
	if c.VirtualServices, err = r.conflictComponent(ctx, vs); err != nil {
		return nil, err
	}
	for _, ref := range vs.Spec.BackendRefs {
		key := types.NamespacedName{Namespace: vs.Namespace, Name: ref.Name}
		switch ref.EffectiveKind() {
		case v1alpha1.BackendKindBackendPool:
			err = r.gatherPool(ctx, c, key)
		case v1alpha1.BackendKindService:
			err = r.gatherService(ctx, c, key)
		}
		// Any other kind makes the VirtualService invalid (pkg/desired): nothing to read.
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// conflictComponent is vs and the VirtualServices reachable from it through shared conflict
// keys, at most maxConflictComponent of them.
func (r *VirtualServiceReconciler) conflictComponent(ctx context.Context, vs *v1alpha1.VirtualService) ([]*v1alpha1.VirtualService, error) {
	out := []*v1alpha1.VirtualService{vs}
	seen := map[types.NamespacedName]bool{{Namespace: vs.Namespace, Name: vs.Name}: true}
	seenKey := map[string]bool{}
	queue := desired.ConflictKeys(vs)
	for len(queue) > 0 && len(out) < maxConflictComponent {
		k := queue[0]
		queue = queue[1:]
		if seenKey[k] {
			continue
		}
		seenKey[k] = true
		var list v1alpha1.VirtualServiceList
		if err := r.Client.List(ctx, &list, client.MatchingFields{IndexConflictKey: k}); err != nil {
			return nil, fmt.Errorf("listing VirtualServices claiming %s: %w", k, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			nn := types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
			if seen[nn] || !o.DeletionTimestamp.IsZero() {
				continue
			}
			seen[nn] = true
			out = append(out, o)
			queue = append(queue, desired.ConflictKeys(o)...)
		}
	}
	return out, nil
}

func (r *VirtualServiceReconciler) gatherPool(ctx context.Context, c *desired.Cluster, key types.NamespacedName) error {
	var p v1alpha1.BackendPool
	if err := r.Client.Get(ctx, key, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("getting BackendPool %s: %w", key, err)
	}
	c.BackendPools = append(c.BackendPools, &p)
	return nil
}

func (r *VirtualServiceReconciler) gatherService(ctx context.Context, c *desired.Cluster, key types.NamespacedName) error {
	var s corev1.Service
	if err := r.Client.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("getting Service %s: %w", key, err)
	}
	c.Services = append(c.Services, &s)
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(key.Namespace),
		client.MatchingFields{IndexSliceService: key.Name}); err != nil {
		return fmt.Errorf("listing EndpointSlices of Service %s: %w", key, err)
	}
	for i := range slices.Items {
		c.EndpointSlices = append(c.EndpointSlices, &slices.Items[i])
	}
	return nil
}

// applyStatus writes obj's status with server-side apply, owning exactly the fields set.
func applyStatus(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("converting %T status: %w", obj, err)
	}
	delete(u, "spec")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := c.Status().Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying status of %s %s/%s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// SetupWithManager registers the reconciler and its watches. SetupIndexes must have run.
func (r *VirtualServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	c := mgr.GetClient()
	if r.nodes == nil {
		r.nodes = newNodeTable()
	}
	leaseNS := r.AgentLeaseNamespace
	if leaseNS == "" {
		leaseNS = DefaultAgentLeaseNamespace
	}
	byIndex := func(index string, name func(client.Object) string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			keys, err := listByIndex(ctx, c, index, name(o), o.GetNamespace())
			if err != nil {
				log.FromContext(ctx).Error(err, "mapping watch event")
				return nil
			}
			return requests(keys)
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("virtualservice").
		For(&v1alpha1.VirtualService{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A VirtualService that appears, changes its keys or goes away may settle another's conflict.
		Watches(&v1alpha1.VirtualService{}, conflictPeers{c: c}).
		Watches(&corev1.Service{}, byIndex(IndexServiceRef, client.Object.GetName)).
		Watches(&discoveryv1.EndpointSlice{}, byIndex(IndexServiceRef, func(o client.Object) string {
			return o.GetLabels()[discoveryv1.LabelServiceName]
		})).
		Watches(&v1alpha1.BackendPool{}, byIndex(IndexPoolRef, client.Object.GetName),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.IPVSNode{}, ipvsNodeEvents{table: r.nodes}).
		Watches(&corev1.Node{}, nodeEvents{c: c, table: r.nodes}).
		Watches(&coordinationv1.Lease{}, leaseEvents{namespace: leaseNS, table: r.nodes, now: time.Now}).
		Complete(r)
}

func requests(keys []types.NamespacedName) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(keys))
	for _, k := range keys {
		out = append(out, reconcile.Request{NamespacedName: k})
	}
	return out
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// conflictPeers enqueues the VirtualServices sharing a conflict key with a VirtualService that
// was created, deleted, or changed (old and new keys).
type conflictPeers struct{ c client.Reader }

func (h conflictPeers) enqueue(ctx context.Context, q queue, self client.Object, keys ...[]string) {
	done := map[string]bool{}
	for _, ks := range keys {
		for _, k := range ks {
			if done[k] {
				continue
			}
			done[k] = true
			peers, err := listByIndex(ctx, h.c, IndexConflictKey, k, "")
			if err != nil {
				log.FromContext(ctx).Error(err, "mapping VirtualService event to conflict peers")
				continue
			}
			for _, p := range peers {
				if p.Namespace == self.GetNamespace() && p.Name == self.GetName() {
					continue
				}
				q.Add(reconcile.Request{NamespacedName: p})
			}
		}
	}
}

func (h conflictPeers) Create(ctx context.Context, e event.CreateEvent, q queue) {
	h.enqueue(ctx, q, e.Object, conflictKeys(e.Object))
}

func (h conflictPeers) Update(ctx context.Context, e event.UpdateEvent, q queue) {
	if e.ObjectOld.GetGeneration() == e.ObjectNew.GetGeneration() {
		return
	}
	h.enqueue(ctx, q, e.ObjectNew, conflictKeys(e.ObjectOld), conflictKeys(e.ObjectNew))
}

func (h conflictPeers) Delete(ctx context.Context, e event.DeleteEvent, q queue) {
	h.enqueue(ctx, q, e.Object, conflictKeys(e.Object))
}

func (h conflictPeers) Generic(context.Context, event.GenericEvent, queue) {}
