package agent

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/controllers"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
	"github.com/kubelvs/kubelvs/pkg/lvs"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// startAgent runs the agent's manager (the binary's cache and client options) with a fake
// kernel against the real API server.
func startAgent(t *testing.T, node string, fk *fakeKernel) { startAgentB(t, node, fk) }

func startAgentB(t testing.TB, node string, fk *fakeKernel, dp ...Dataplane) {
	t.Helper()
	t.Cleanup(startAgentDir(t, node, fk, t.TempDir(), nil, dp...))
}

// startAgentDir starts an agent with its checkpoint in dir, calling ready (when not nil) once
// it is ready; the returned function stops it.
// dp, when given, is the reconciler's dataplane.
func startAgentDir(t testing.TB, node string, fk *fakeKernel, dir string, ready func(), dp ...Dataplane) (stop func()) {
	t.Helper()
	co, cl, err := ClusterOptions(env.Config, env.Scheme, node)
	must(t, err)
	opts := ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: co, Client: cl}
	mgr, err := ctrl.NewManager(env.Config, opts)
	must(t, err)
	must(t, controllers.SetupIndexes(t.Context(), Indexer(mgr.GetCache())))
	must(t, podstats.SetupIndexes(t.Context(), Indexer(mgr.GetCache())))
	cfg := Config{Node: node, Kernel: fk, CheckpointInterval: time.Second,
		Checkpoint: &CheckpointFile{Path: dir + "/agent-checkpoint.json"}}
	if len(dp) > 0 {
		cfg.Dataplane = dp[0]
	}
	rec := NewReconciler(cfg)
	status := &StatusWriter{Client: mgr.GetClient(), Node: node, Agent: v1alpha1.AgentInfo{Version: "test"},
		LeaseNamespace: "default", LeaseDuration: 40 * time.Second}
	runner := NewRunner(RunnerConfig{Node: node, Reconciler: rec, Cache: mgr.GetCache(), Status: status,
		AuditPeriod: time.Hour, DrainPoll: 100 * time.Millisecond, RetryPeriod: time.Second})
	if ready != nil {
		runner.OnReady(ready)
	}
	must(t, mgr.Add(runner))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent manager: %v", err)
		}
	}
}

func endpoint(addr string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
}

func TestAgentAgainstAPIServer(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	node := "agent-node-1"
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"pool": "edge"}}}
	must(t, c.Create(ctx, n))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}
	must(t, c.Create(ctx, ns))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	must(t, c.Create(ctx, svc))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns.Name, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{endpoint("10.1.0.1", true), endpoint("10.1.0.2", true)},
	}
	must(t, c.Create(ctx, slice))
	vs := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{"192.0.2.10"}, Ports: []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: "web"}},
		Drain:       &v1alpha1.Drain{TimeoutSeconds: ptr.To[int32](30)},
	}}
	must(t, c.Create(ctx, vs))

	fk := newFakeKernel()
	foreign := &lvs.Service{ServiceKey: key(lvs.TCP, "192.0.2.10", 22), Scheduler: "rr"}
	fk.hand(ipvs.Op{Kind: ipvs.AddService, Service: foreign})
	startAgent(t, node, fk)

	programmedTable := []string{
		"-A TCP 192.0.2.10:22 -s rr",
		"-A TCP 192.0.2.10:80 -s wrr",
		"-a TCP 192.0.2.10:80 -r 10.1.0.1:8080 -w 1 Masquerade",
		"-a TCP 192.0.2.10:80 -r 10.1.0.2:8080 -w 1 Masquerade",
	}
	eventually(t, "the table programmed", func() error {
		if diff := cmp.Diff(programmedTable, fk.dump()); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})
	eventually(t, "the IPVSNode reporting web programmed", func() error {
		var in v1alpha1.IPVSNode
		if err := c.Get(ctx, types.NamespacedName{Name: node}, &in); err != nil {
			return err
		}
		if len(in.OwnerReferences) != 1 || in.OwnerReferences[0].Kind != "Node" || in.OwnerReferences[0].UID != n.UID {
			return fmt.Errorf("owner references %v, want the Node", in.OwnerReferences)
		}
		want := []v1alpha1.NodeVirtualService{{Namespace: ns.Name, Name: "web", ObservedGeneration: 1, State: v1alpha1.StateProgrammed,
			RealServers: &v1alpha1.RealServerCounts{Active: 2}}}
		if diff := cmp.Diff(want, in.Status.VirtualServices); diff != "" {
			return fmt.Errorf("entries (-want +got):\n%s", diff)
		}
		for _, cond := range []string{v1alpha1.NodeConditionReady, v1alpha1.NodeConditionIPVSAvailable, v1alpha1.NodeConditionConflictFree} {
			if got := condStatus(in.Status.Conditions, cond); got != metav1.ConditionTrue {
				return fmt.Errorf("condition %s is %q", cond, got)
			}
		}
		if in.Status.Counts == nil || *in.Status.Counts != (v1alpha1.IPVSCounts{VirtualServices: 1, Services: 1, Destinations: 2}) {
			return fmt.Errorf("counts %+v", in.Status.Counts)
		}
		return nil
	})
	var lease coordinationv1.Lease
	must(t, c.Get(ctx, types.NamespacedName{Namespace: "default", Name: LeaseName(node)}, &lease))
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != node || lease.Spec.RenewTime == nil {
		t.Errorf("lease %+v", lease.Spec)
	}

	// One endpoint terminates: exactly one kernel operation (a weight-0 update).
	fk.resetCounts()
	slice.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	must(t, c.Update(ctx, slice))
	eventually(t, "the terminating endpoint at weight 0", func() error {
		if w, _ := fk.counts(); w != 1 || fk.kind(ipvs.UpdateDestination) != 1 {
			return fmt.Errorf("%d writes %v", w, fk.kinds())
		}
		return nil
	})
	// The drain poll dumps that one service; with no connections left the destination goes.
	eventually(t, "the drained destination removed", func() error {
		if w, _ := fk.counts(); w != 2 || fk.kind(ipvs.DeleteDestination) != 1 {
			return fmt.Errorf("%d writes %v", w, fk.kinds())
		}
		return nil
	})

	// A Node label change that the VirtualService's (absent) selector cannot see changes nothing.
	fk.resetCounts()
	n.Labels["pool"] = "core"
	must(t, c.Update(ctx, n))
	// A VirtualService with a selector on the new label value is then programmed.
	vs2 := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "core"}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{"192.0.2.11"}, Ports: []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs:  []v1alpha1.BackendRef{{Name: "web"}},
		NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "core"}},
	}}
	must(t, c.Create(ctx, vs2))
	eventually(t, "the selected VirtualService programmed", func() error {
		if fk.kind(ipvs.AddService) != 1 || fk.kind(ipvs.AddDestination) != 1 {
			return fmt.Errorf("writes %v", fk.kinds())
		}
		return nil
	})

	// The VirtualService is deleted: its destination drains, then the service goes; the
	// foreign service stays.
	must(t, c.Delete(ctx, vs))
	must(t, c.Delete(ctx, vs2))
	fk.setConns(key(lvs.TCP, "192.0.2.10", 80), lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080}, 0, 0)
	fk.setConns(key(lvs.TCP, "192.0.2.11", 80), lvs.DestinationKey{Address: netip.MustParseAddr("10.1.0.1"), Port: 8080}, 0, 0)
	eventually(t, "only the foreign service left", func() error {
		if diff := cmp.Diff([]string{"-A TCP 192.0.2.10:22 -s rr"}, fk.dump()); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})
	eventually(t, "the IPVSNode without entries", func() error {
		var in v1alpha1.IPVSNode
		if err := c.Get(ctx, types.NamespacedName{Name: node}, &in); err != nil {
			return err
		}
		if len(in.Status.VirtualServices) != 0 {
			return fmt.Errorf("entries %v", in.Status.VirtualServices)
		}
		return nil
	})
}

func condStatus(conds []metav1.Condition, t string) metav1.ConditionStatus {
	for _, c := range conds {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// TestFirstSyncReleasesMemory: once the first sync is done the agent collects its garbage and
// returns the pages to the kernel (a forced collection; nothing else in this package's tests
// forces one).
func TestFirstSyncReleasesMemory(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := forced()
	ready := make(chan struct{})
	t.Cleanup(startAgentDir(t, "agent-node-release", newFakeKernel(), t.TempDir(), func() { close(ready) }))
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatal("the agent was not ready within a minute")
	}
	if n := forced() - before; n < 1 {
		t.Errorf("%d forced collections from start to ready, want at least 1 (the first sync's memory released)", n)
	}
}
