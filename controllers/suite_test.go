package controllers

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/testenv"
)

var (
	env *testenv.Env
	k8s client.Client // direct client (no cache): what users see
	obs = &observer{counts: map[types.NamespacedName]int{}, writes: map[types.NamespacedName]int{}}
)

// observer counts reconciles and status writes per VirtualService, through the reconciler's
// Observe hook, and lets tests wait for a count instead of sleeping.
type observer struct {
	mu      sync.Mutex
	counts  map[types.NamespacedName]int
	writes  map[types.NamespacedName]int
	changed chan struct{} // closed (and replaced) at every observation
}

func (o *observer) observe(k types.NamespacedName, wrote bool) {
	o.mu.Lock()
	o.counts[k]++
	if wrote {
		o.writes[k]++
	}
	if o.changed != nil {
		close(o.changed)
	}
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// waitCount waits until key has been reconciled more than after times, and returns the count.
func (o *observer) waitCount(t *testing.T, key types.NamespacedName, after int) int {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		o.mu.Lock()
		n := o.counts[key]
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		ch := o.changed
		o.mu.Unlock()
		if n > after {
			return n
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for reconcile %d of %s", after+1, key)
		}
	}
}

// barrier is a VirtualService of its own in a test's namespace that tests reconcile on
// demand: the controller has one worker and its queue is first in, first out, so once a
// reconcile of the barrier requested now has ended, every reconcile requested before it has
// ended too. Tests pass it instead of sleeping before they assert that something was not
// reconciled.
type barrier struct {
	key types.NamespacedName
	svc *corev1.Service
}

func newBarrier(t *testing.T, ns string) *barrier {
	t.Helper()
	ctx := context.Background()
	b := &barrier{svc: service(ns, "barrier", 80)}
	must(t, k8s.Create(ctx, b.svc))
	vs := virtualService(ns, "barrier", "10.99.0.1", "barrier", "barrier")
	vs.Spec.Addresses = nil
	vs.Spec.Ports = nil
	vs.Spec.FirewallMark = ptr.To[int64](1 << 30)
	vs.Spec.BackendRefs[0].Port = ptr.To[int32](80)
	vs.Name = "barrier"
	must(t, k8s.Create(ctx, vs))
	b.key = client.ObjectKeyFromObject(vs)
	waitStatus(t, b.key, expect{conds: conds(v1alpha1.ConditionResolvedRefs, "True/ResolvedRefs")})
	return b
}

// pass requests a reconcile of the barrier (a change to its Service, through the Service
// index) and waits for it to end.
func (b *barrier) pass(t *testing.T) {
	t.Helper()
	n := obs.count(b.key)
	must(t, k8s.Get(context.Background(), client.ObjectKeyFromObject(b.svc), b.svc))
	if b.svc.Labels == nil {
		b.svc.Labels = map[string]string{}
	}
	b.svc.Labels["pass"] = strconv.Itoa(n)
	must(t, k8s.Update(context.Background(), b.svc))
	obs.waitCount(t, b.key, n)
}

func (o *observer) written(k types.NamespacedName) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes[k]
}

func (o *observer) count(k types.NamespacedName) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[k]
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(func(e *testenv.Env) int {
		env, k8s = e, e.Client
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapLevel())))
		mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
			Scheme:                 e.Scheme,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "creating manager:", err)
			return 1
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := Setup(ctx, mgr, Options{Recorder: mgr.GetEventRecorder("kubelvs-controller"), Observe: obs.observe}); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			return 1
		}
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		code := m.Run()
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
			code = 1
		}
		return code
	}))
}

func zapLevel() zapcore.Level {
	if os.Getenv("KUBELVS_TEST_DEBUG") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// --- helpers -----------------------------------------------------------------------------------

const waitFor = 30 * time.Second

// eventually retries check until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	must(t, k8s.Create(context.Background(), ns))
	// envtest has no namespace controller: delete the VirtualServices ourselves, or they would
	// keep their addresses (and conflict with the next run's, -count=N).
	t.Cleanup(func() {
		if err := k8s.DeleteAllOf(context.Background(), &v1alpha1.VirtualService{}, client.InNamespace(ns.Name)); err != nil {
			t.Errorf("cleaning up VirtualServices in %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newNodes creates n Nodes labelled group=<group> and returns their names.
func newNodes(t *testing.T, group string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", group, i), Labels: map[string]string{"group": group}}}
		must(t, k8s.Create(context.Background(), node))
		names = append(names, node.Name)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	}
	return names
}

func service(ns, name string, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

type endpoint struct {
	addr                        string
	ready, serving, terminating bool
}

func endpointSlice(ns, name, svc string, port int32, eps ...endpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(fmt.Sprintf("p%d", port)), Port: ptr.To(port + 8000), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	setEndpoints(es, eps...)
	return es
}

func setEndpoints(es *discoveryv1.EndpointSlice, eps ...endpoint) {
	es.Endpoints = nil
	for _, e := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating)}})
	}
}

func ready(addr string) endpoint { return endpoint{addr: addr, ready: true, serving: true} }

func terminating(addr string) endpoint { return endpoint{addr: addr, serving: true, terminating: true} }

func virtualService(ns, name, addr, group string, refs ...string) *v1alpha1.VirtualService {
	v := &v1alpha1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.VirtualServiceSpec{
			Addresses:    []string{addr},
			Ports:        []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": group}},
		},
	}
	for _, r := range refs {
		v.Spec.BackendRefs = append(v.Spec.BackendRefs, v1alpha1.BackendRef{Name: r})
	}
	return v
}

func get(t *testing.T, key types.NamespacedName) *v1alpha1.VirtualService {
	t.Helper()
	var v v1alpha1.VirtualService
	must(t, k8s.Get(context.Background(), key, &v))
	return &v
}

// cond returns "Status/Reason" of a condition, or "" without it.
func cond(v *v1alpha1.VirtualService, typ string) string {
	c := meta.FindStatusCondition(v.Status.Conditions, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

// expect describes the status a test waits for; empty fields are not checked.
type expect struct {
	conds    map[string]string // type -> "True/Reason"
	backends *v1alpha1.BackendCounts
	nodes    string // summary
	kstatus  kstatus.Status
	message  map[string]string // type -> exact message
}

func (e expect) check(v *v1alpha1.VirtualService) error {
	if v.Status.ObservedGeneration != v.Generation {
		return fmt.Errorf("observedGeneration %d, generation %d", v.Status.ObservedGeneration, v.Generation)
	}
	for typ, want := range e.conds {
		if got := cond(v, typ); got != want {
			return fmt.Errorf("condition %s is %q, want %q (conditions: %+v)", typ, got, want, v.Status.Conditions)
		}
	}
	for typ, want := range e.message {
		if c := meta.FindStatusCondition(v.Status.Conditions, typ); c == nil || c.Message != want {
			return fmt.Errorf("condition %s message is %+v, want %q", typ, c, want)
		}
	}
	if e.backends != nil && (v.Status.Backends == nil || *v.Status.Backends != *e.backends) {
		return fmt.Errorf("backends %+v, want %+v", v.Status.Backends, *e.backends)
	}
	if e.nodes != "" && (v.Status.Nodes == nil || v.Status.Nodes.Summary != e.nodes) {
		return fmt.Errorf("nodes %+v, want summary %q", v.Status.Nodes, e.nodes)
	}
	if e.kstatus != "" {
		if got := kstatusOf(v); got != e.kstatus {
			return fmt.Errorf("kstatus %s, want %s", got, e.kstatus)
		}
	}
	return nil
}

func kstatusOf(v *v1alpha1.VirtualService) kstatus.Status {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		return "error: " + kstatus.Status(err.Error())
	}
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return "error: " + kstatus.Status(err.Error())
	}
	return res.Status
}

func waitStatus(t *testing.T, key types.NamespacedName, e expect) *v1alpha1.VirtualService {
	t.Helper()
	var v *v1alpha1.VirtualService
	eventually(t, fmt.Sprintf("status of %s", key), func() error {
		v = get(t, key)
		return e.check(v)
	})
	return v
}

// report writes the IPVSNode status of node as its agent would, with one entry.
func report(t *testing.T, node string, key types.NamespacedName, gen int64, state v1alpha1.NodeVirtualServiceState, reason, msg string) {
	t.Helper()
	ctx := context.Background()
	in := &v1alpha1.IPVSNode{}
	if err := k8s.Get(ctx, types.NamespacedName{Name: node}, in); err != nil {
		in = &v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
		must(t, k8s.Create(ctx, in))
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), in) })
	}
	entry := v1alpha1.NodeVirtualService{Namespace: key.Namespace, Name: key.Name, ObservedGeneration: gen, State: state, Reason: reason, Message: msg}
	if e := findEntry(in, key); e != nil {
		*e = entry
	} else {
		in.Status.VirtualServices = append(in.Status.VirtualServices, entry)
	}
	must(t, k8s.Status().Update(ctx, in))
}

func findEntry(in *v1alpha1.IPVSNode, key types.NamespacedName) *v1alpha1.NodeVirtualService {
	for i := range in.Status.VirtualServices {
		e := &in.Status.VirtualServices[i]
		if e.Namespace == key.Namespace && e.Name == key.Name {
			return e
		}
	}
	return nil
}
