package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/pkg/desired"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Node       string
	Reconciler *Reconciler
	// Cache holds the watched objects with the controllers' field indexes (SetupIndexes).
	Cache cache.Cache
	// Status writes the node's IPVSNode and Lease; nil writes nothing.
	Status *StatusWriter
	// AuditPeriod is the mean time between audits (jittered by ±10 %).
	AuditPeriod time.Duration
	// DrainPoll is how often services with draining destinations are polled.
	DrainPoll time.Duration
	// RetryPeriod is how long a VirtualService whose operations failed waits before a retry.
	RetryPeriod time.Duration
	Log         logr.Logger
	// Began is when the agent began (the start-up log line's times are from it); zero: when
	// Start was called.
	Began time.Time
}

// Runner is the agent's loop (a controller-runtime Runnable): it turns watch events into the
// VirtualServices they can affect, and syncs, drains and audits on one goroutine.
type Runner struct {
	cfg RunnerConfig

	mu      sync.Mutex
	dirty   map[types.NamespacedName]time.Time // value: earliest EndpointSlice trigger time, or zero
	all     bool                               // every VirtualService is dirty (node labels changed)
	wake    chan struct{}
	onReady []func()
	// started: the first sync began. Events before it are dropped: that sync lists every
	// VirtualService from the synced caches, and mapping the caches' initial adds one by one
	// through the indexes cost a restart time in proportion to the cluster.
	started atomic.Bool
	// synced: the caches have synced (reads through them no longer fail or wait).
	synced atomic.Bool

	adoptOnce sync.Once
	adopted   chan error // Adopt's result
	adoptedAt time.Time  // when Adopt ended (read after adopted is received)
}

// OnReady registers f to run once the kernel's table is adopted and the first sync is done.
func (r *Runner) OnReady(f func()) { r.onReady = append(r.onReady, f) }

// OwnersSnapshot returns which VirtualService owns each service (for the metrics collector).
func (r *Runner) OwnersSnapshot() map[lvs.ServiceKey]types.NamespacedName {
	return r.cfg.Reconciler.OwnersSnapshot()
}

// NewRunner returns a Runner.
func NewRunner(cfg RunnerConfig) *Runner {
	return &Runner{cfg: cfg, dirty: map[types.NamespacedName]time.Time{}, wake: make(chan struct{}, 1), adopted: make(chan error, 1)}
}

// NeedLeaderElection: every node's agent runs.
func (r *Runner) NeedLeaderElection() bool { return false }

func (r *Runner) mark(keys []types.NamespacedName, trigger time.Time) {
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	for _, k := range keys {
		t, ok := r.dirty[k]
		if !ok || (!trigger.IsZero() && (t.IsZero() || trigger.Before(t))) {
			r.dirty[k] = trigger
		}
	}
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) markAll() {
	r.mu.Lock()
	r.all = true
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start registers the event handlers, waits for the caches, adopts the kernel's state and
// runs the loop until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.register(ctx); err != nil {
		return err
	}
	go r.cfg.Status.Run(ctx)
	began := r.cfg.Began
	if began.IsZero() {
		began = time.Now()
	}
	r.Adopt(ctx)
	if !r.cfg.Cache.WaitForCacheSync(ctx) {
		return errors.New("agent: caches did not sync")
	}
	synced := time.Since(began)
	r.synced.Store(true)
	if err := <-r.adopted; err != nil {
		return err
	}
	r.started.Store(true)
	r.markAll()
	r.process(ctx)
	heap := releaseFirstSync()
	r.cfg.Log.Info("ready: table adopted and first sync done", "adopted", r.adoptedAt.Sub(began).Seconds(),
		"cachesSynced", synced.Seconds(), "ready", time.Since(began).Seconds(), "heapMiB", heap>>20)
	for _, f := range r.onReady {
		f()
	}
	return r.loop(ctx)
}

// releaseFirstSync collects the first sync's garbage and returns the freed memory to the
// kernel, and returns the bytes the heap still holds. That sync is the agent's largest
// allocation by far (what every VirtualService wants, and the steps, at once): left to the
// collector, the heap's next goal is twice that peak, and the pages stay resident long after
// (converged at 10,000 VirtualServices, the agent's resident memory was that of its first
// sync, not of what it keeps). One forced collection, once, costs what one cycle costs.
func releaseFirstSync() uint64 {
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Adopt begins adopting the kernel's state (the checkpoint, one table read, the dataplane)
// on a goroutine of its own, once; Start waits for it. It needs nothing from the API server:
// called before the manager starts, the table is read while the caches fill (controller-runtime
// starts runnables such as the Runner only after the caches have synced).
func (r *Runner) Adopt(ctx context.Context) {
	r.adoptOnce.Do(func() {
		go func() {
			err := r.adopt(ctx)
			r.adoptedAt = time.Now()
			r.adopted <- err
		}()
	})
}

// adopt retries the reconciler's start-up until the kernel answers.
func (r *Runner) adopt(ctx context.Context) error {
	for {
		err := r.cfg.Reconciler.Start(ctx)
		if err == nil {
			r.cfg.Status.setIPVS(nil)
			return nil
		}
		r.cfg.Log.Error(err, "cannot read the IPVS table; retrying")
		r.cfg.Status.setIPVS(err)
		// The IPVSNode is owned by the Node: learn its UID here too, or a node without IPVS
		// never gets the IPVSNode that says so (once the caches can be read).
		if r.synced.Load() {
			r.node(ctx)
			r.cfg.Status.Publish(r.cfg.Reconciler.Report())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

func (r *Runner) loop(ctx context.Context) error {
	audit := time.NewTimer(jitter(r.cfg.AuditPeriod))
	defer audit.Stop()
	rec := r.cfg.Reconciler
	defer func() {
		if err := rec.FlushCheckpoint(); err != nil {
			r.cfg.Log.Error(err, "checkpoint at shutdown")
		}
	}()
	var drain <-chan time.Time
	var report reportClock
	audited := make(chan auditRead, 1)
	// A drain poll's dumps and an audit's table read are made on goroutines of their own: at
	// thousands of services they take long, and changes must not wait for them. An audit's
	// read does not begin while a drain poll's is out: the audit's repair forgets which
	// services changed before its read began, which the poll's result is checked against.
	drained := make(chan DrainRead, 1)
	polling, auditDue := false, false
	startAudit := func() {
		since, start := rec.Model().Seq(), time.Now()
		go func() {
			table, err := rec.ReadTable(ctx)
			audited <- auditRead{table, err, since, start}
		}()
	}
	for {
		if failed := r.process(ctx); len(failed) > 0 {
			time.AfterFunc(r.cfg.RetryPeriod, func() { r.mark(failed, time.Time{}) })
		}
		if drain == nil && !polling && rec.Model().HasDraining() {
			drain = time.After(r.cfg.DrainPoll)
		}
		checkpoint := r.checkpointTimer()
		// The report covers every VirtualService: building it after each batch would make a
		// change cost time in proportion to the node's table.
		if report.due(time.Now()) {
			r.cfg.Status.Publish(rec.Report())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-report.timer:
		case <-checkpoint:
			if err := rec.FlushCheckpoint(); err != nil {
				r.cfg.Log.Error(err, "checkpoint")
			}
		case <-drain:
			drain, polling = nil, true
			p := rec.DrainTargets()
			go func() { drained <- rec.ReadDrains(ctx, p) }()
		case d := <-drained:
			polling = false
			if err := rec.FinishDrains(ctx, d); err != nil {
				r.cfg.Log.Error(err, "drain poll")
			}
			if auditDue {
				auditDue = false
				startAudit()
			}
		case <-audit.C:
			if polling {
				auditDue = true
			} else {
				startAudit()
			}
		case a := <-audited:
			r.finishAudit(ctx, a)
			audit.Reset(jitter(r.cfg.AuditPeriod))
		}
	}
}

// auditRead is a table read for an audit, begun when the model's Seq was since.
type auditRead struct {
	table []ipvs.TableEntry
	err   error
	since uint64
	start time.Time
}

func (r *Runner) finishAudit(ctx context.Context, a auditRead) {
	rec := r.cfg.Reconciler
	err := a.err
	if err == nil {
		_, err = rec.Repair(ctx, a.table, a.since, a.start)
	}
	if err != nil {
		r.cfg.Log.Error(err, "audit")
		r.cfg.Status.setIPVS(err)
		return
	}
	r.cfg.Status.setIPVS(nil)
	// A service someone else had on a wanted key may be gone now.
	r.mark(rec.Refused(), time.Time{})
}

// checkpointTimer fires when a checkpoint write that waits is due (nil when none waits).
func (r *Runner) checkpointTimer() <-chan time.Time {
	at, ok := r.cfg.Reconciler.CheckpointDue()
	if !ok {
		return nil
	}
	return time.After(time.Until(at))
}

// reportInterval is the least time between two status reports of the loop.
const reportInterval = time.Second

// reportClock spaces the loop's status reports: at most one per reportInterval, the last
// change never left unreported (timer fires when one waits).
type reportClock struct {
	last  time.Time
	timer <-chan time.Time
}

// due reports whether a report is to be built now; otherwise it arms the timer.
func (c *reportClock) due(now time.Time) bool {
	if wait := c.last.Add(reportInterval).Sub(now); wait > 0 {
		if c.timer == nil {
			c.timer = time.After(wait)
		}
		return false
	}
	c.last, c.timer = now, nil
	return true
}

// slowSync is the length from which a sync is logged with where its time went (a first
// sync of thousands of VirtualServices; a single change takes milliseconds).
const slowSync = time.Second

// process syncs the dirty VirtualServices; it returns those to retry.
func (r *Runner) process(ctx context.Context) []types.NamespacedName {
	r.mu.Lock()
	dirty, all := r.dirty, r.all
	r.dirty, r.all = map[types.NamespacedName]time.Time{}, false
	r.mu.Unlock()
	if all {
		var err error
		if dirty, err = r.everything(ctx, dirty); err != nil {
			r.cfg.Log.Error(err, "listing VirtualServices")
			r.markAll()
			return nil
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	node, ok := r.node(ctx)
	if !ok {
		r.mu.Lock()
		for k, t := range dirty {
			r.dirty[k] = t
		}
		r.mu.Unlock()
		return nil
	}
	keys := make([]types.NamespacedName, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	began := time.Now()
	wants, err := r.wants(ctx, node, keys, all)
	if err != nil {
		r.cfg.Log.Error(err, "computing what VirtualServices want")
		return keys
	}
	computed := time.Now()
	failed, err := r.cfg.Reconciler.Sync(ctx, wants)
	if err != nil {
		r.cfg.Log.Error(err, "sync")
	}
	done := time.Now()
	if took := done.Sub(began); took >= slowSync {
		r.cfg.Log.Info("slow sync", append([]any{"virtualServices", len(keys), "seconds", took.Seconds(),
			"wants", computed.Sub(began).Seconds()}, r.cfg.Reconciler.phases.keysAndValues()...)...)
	}
	for _, t := range dirty {
		if !t.IsZero() {
			r.cfg.Reconciler.cfg.Metrics.ProgrammingLatency.Observe(done.Sub(t).Seconds())
		}
	}
	return failed
}

// wants computes what keys want: when every VirtualService is dirty, from one evaluation of
// the whole node (cheaper than one per VirtualService, and the same result).
func (r *Runner) wants(ctx context.Context, node desired.Node, keys []types.NamespacedName, all bool) ([]Want, error) {
	if all {
		return WantsAll(ctx, r.cfg.Cache, node, keys)
	}
	return Wants(ctx, r.cfg.Cache, node, keys)
}

// everything adds every VirtualService and every owner of a service in the model to dirty.
func (r *Runner) everything(ctx context.Context, dirty map[types.NamespacedName]time.Time) (map[types.NamespacedName]time.Time, error) {
	var list v1alpha1.VirtualServiceList
	if err := r.cfg.Cache.List(ctx, &list); err != nil {
		return dirty, err
	}
	for i := range list.Items {
		k := types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}
		if _, ok := dirty[k]; !ok {
			dirty[k] = time.Time{}
		}
	}
	for _, k := range r.cfg.Reconciler.Model().Owners() {
		if _, ok := dirty[k]; !ok {
			dirty[k] = time.Time{}
		}
	}
	return dirty, nil
}

func (r *Runner) node(ctx context.Context) (desired.Node, bool) {
	var n corev1.Node
	if err := r.cfg.Cache.Get(ctx, types.NamespacedName{Name: r.cfg.Node}, &n); err != nil {
		r.cfg.Log.Error(err, "cannot read this node's Node object; waiting", "node", r.cfg.Node)
		return desired.Node{}, false
	}
	r.cfg.Status.setNode(&n)
	r.cfg.Reconciler.dataplaneNode(&n)
	return desired.Node{Name: n.Name, Labels: n.Labels}, true
}

// register adds the event handlers that map each change to the VirtualServices it can affect.
func (r *Runner) register(ctx context.Context) error {
	handlers := []struct {
		obj client.Object
		fn  func(ctx context.Context, old, cur client.Object)
	}{
		{&v1alpha1.VirtualService{}, r.onVirtualService},
		{&corev1.Service{}, r.onService},
		{&discoveryv1.EndpointSlice{}, r.onEndpointSlice},
		{&v1alpha1.BackendPool{}, r.onPool},
		{&corev1.Node{}, r.onNode},
		{&corev1.Pod{}, r.onPod}, // delay-aware weights (delayaware.go)
	}
	for _, h := range handlers {
		inf, err := r.cfg.Cache.GetInformer(ctx, h.obj)
		if err != nil {
			return err
		}
		fn := func(ctx context.Context, old, cur client.Object) {
			if r.started.Load() {
				h.fn(ctx, old, cur)
			}
		}
		// The caches are synced before the Runner starts, so the informer replays every object
		// it holds to the new handler as an add "in the initial list": the first sync lists
		// them all anyway (and delivered after it, they would each be evaluated again).
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(o any, initial bool) {
				if !initial {
					fn(ctx, nil, asObject(o))
				}
			},
			UpdateFunc: func(o, n any) { fn(ctx, asObject(o), asObject(n)) },
			DeleteFunc: func(o any) { fn(ctx, asObject(o), nil) },
		}); err != nil {
			return err
		}
	}
	return nil
}

func asObject(o any) client.Object {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	c, _ := o.(client.Object)
	return c
}

func (r *Runner) onVirtualService(ctx context.Context, old, cur client.Object) {
	if old != nil && cur != nil && old.GetGeneration() == cur.GetGeneration() &&
		old.GetDeletionTimestamp().Equal(cur.GetDeletionTimestamp()) {
		// Its status or metadata changed (the controller writes the status as nodes program
		// it): nothing the node's table depends on.
		return
	}
	for _, o := range []client.Object{old, cur} {
		vs, ok := o.(*v1alpha1.VirtualService)
		if !ok || vs == nil {
			continue
		}
		r.mark([]types.NamespacedName{{Namespace: vs.Namespace, Name: vs.Name}}, time.Time{})
		// VirtualServices that shared its keys may win or lose them now.
		for _, ck := range desired.ConflictKeys(vs) {
			r.mark(r.byIndex(ctx, controllers.IndexConflictKey, ck, ""), time.Time{})
		}
	}
}

func (r *Runner) onService(ctx context.Context, old, cur client.Object) {
	o := cur
	if o == nil {
		o = old
	}
	if o != nil {
		r.mark(r.byIndex(ctx, controllers.IndexServiceRef, o.GetName(), o.GetNamespace()), time.Time{})
	}
}

func (r *Runner) onEndpointSlice(ctx context.Context, old, cur client.Object) {
	o := cur
	if o == nil {
		o = old
	}
	if o == nil {
		return
	}
	svc := o.GetLabels()[discoveryv1.LabelServiceName]
	if svc == "" {
		return
	}
	t, _ := triggerTime(o)
	if old != nil && cur != nil {
		if ot, ok := triggerTime(old); ok && ot.Equal(t) {
			t = time.Time{} // a resync or a change without a new trigger: nothing to measure
		}
	}
	r.mark(r.byIndex(ctx, controllers.IndexServiceRef, svc, o.GetNamespace()), t)
}

func (r *Runner) onPool(ctx context.Context, old, cur client.Object) {
	o := cur
	if o == nil {
		o = old
	}
	if o != nil {
		r.mark(r.byIndex(ctx, controllers.IndexPoolRef, o.GetName(), o.GetNamespace()), time.Time{})
	}
}

func (r *Runner) onNode(_ context.Context, old, cur client.Object) {
	if cur == nil || cur.GetName() != r.cfg.Node {
		return
	}
	if old != nil && labels.Equals(old.GetLabels(), cur.GetLabels()) {
		return
	}
	r.markAll()
}

func (r *Runner) byIndex(ctx context.Context, index, value, ns string) []types.NamespacedName {
	var list v1alpha1.VirtualServiceList
	opts := []client.ListOption{client.MatchingFields{index: value}}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := r.cfg.Cache.List(ctx, &list, opts...); err != nil {
		r.cfg.Log.Error(err, "listing VirtualServices by index", "index", index, "value", value)
		r.markAll()
		return nil
	}
	out := make([]types.NamespacedName, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name})
	}
	return out
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}
