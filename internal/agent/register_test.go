package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
)

// The Runner's handlers are added to caches that have synced, whose informers then replay
// every object they hold as an add: those are not changes (the first sync lists them all), and
// even when they arrive after the first sync began they mark nothing. A real add after them
// (the informer delivers in order) is marked. So is a spec update, and not a status update.
func TestRunnerIgnoresTheReplayedInitialList(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "replay-"}}
	must(t, c.Create(ctx, ns))
	vs := func(name, addr string) *v1alpha1.VirtualService {
		return &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Spec: v1alpha1.VirtualServiceSpec{
			Addresses: []string{addr}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: name}}}}
	}
	for i := range 20 {
		must(t, c.Create(ctx, vs(fmt.Sprintf("old-%d", i), fmt.Sprintf("192.0.2.%d", 100+i))))
	}
	co, cl, err := ClusterOptions(env.Config, env.Scheme, "replay-node")
	must(t, err)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: co, Client: cl})
	must(t, err)
	must(t, controllers.SetupIndexes(ctx, Indexer(mgr.GetCache())))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = mgr.GetCache().Start(cctx) }()
	// Every old VirtualService in the cache before the handlers are added.
	eventually(t, "the cache holds the 20 VirtualServices", func() error {
		var l v1alpha1.VirtualServiceList
		if err := mgr.GetCache().List(ctx, &l, &client.ListOptions{Namespace: ns.Name}); err != nil || len(l.Items) != 20 {
			return fmt.Errorf("%d: %w", len(l.Items), err)
		}
		return nil
	})
	r := NewRunner(RunnerConfig{Node: "replay-node", Cache: mgr.GetCache()})
	r.started.Store(true) // as if the first sync had begun before the replay is delivered
	must(t, r.register(cctx))
	must(t, c.Create(ctx, vs("new", "192.0.2.200")))
	onlyMarked(t, r, "an add after the replay", types.NamespacedName{Namespace: ns.Name, Name: "new"})

	// A status update (the controller's, as nodes program a VirtualService) marks nothing; a
	// spec update after it does. One informer delivers both in order: once the second is
	// marked, the first was handled.
	r.mu.Lock()
	clear(r.dirty)
	r.mu.Unlock()
	var st v1alpha1.VirtualService
	must(t, c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: "old-0"}, &st))
	st.Status.ObservedGeneration = st.Generation
	must(t, c.Status().Update(ctx, &st))
	var sp v1alpha1.VirtualService
	must(t, c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: "old-1"}, &sp))
	sp.Spec.Ports[0].Port = 81
	must(t, c.Update(ctx, &sp))
	onlyMarked(t, r, "a status update, then a spec update", types.NamespacedName{Namespace: ns.Name, Name: "old-1"})
}

// onlyMarked waits for key to be marked dirty on r and checks it is the only one marked.
func onlyMarked(t *testing.T, r *Runner, after string, key types.NamespacedName) {
	t.Helper()
	eventually(t, key.String()+" marked", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.dirty[key]; !ok {
			return fmt.Errorf("dirty: %v", slices.Collect(maps.Keys(r.dirty)))
		}
		return nil
	})
	r.mu.Lock()
	got := slices.Collect(maps.Keys(r.dirty))
	r.mu.Unlock()
	if diff := cmp.Diff([]types.NamespacedName{key}, got); diff != "" {
		t.Errorf("marked after %s (-want +got):\n%s", after, diff)
	}
}
