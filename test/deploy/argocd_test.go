package deploy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	scripts "github.com/kubelvs/kubelvs/config/gitops"
	"github.com/kubelvs/kubelvs/internal/gitops"
)

func wantHealth(t *testing.T, kind string, key types.NamespacedName, status, msg string, logs func() string) {
	t.Helper()
	eventually(t, fmt.Sprintf("Argo CD health of %s %s", kind, key), func() error {
		h, err := gitops.Live(ctx, k8s, kind, key)
		if err != nil {
			return err
		}
		if h.Status != status || !strings.Contains(h.Message, msg) {
			return fmt.Errorf("%+v, want %s with %q", h, status, msg)
		}
		return nil
	}, logs)
}

// fakeNodeProgramming makes a Node with labels, its agent Lease and an IPVSNode that reports
// key programmed at gen: what a node's agent writes (the host has no IPVS for a real one).
func fakeNodeProgramming(t *testing.T, node string, labels map[string]string, key types.NamespacedName, gen int64) {
	t.Helper()
	must(t, k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: labels}}))
	now := metav1.NewMicroTime(time.Now())
	must(t, k8s.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: "kubelvs-agent-" + node},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To[int32](3600), RenewTime: &now}}))
	in := &v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
	must(t, k8s.Create(ctx, in))
	in.Status.VirtualServices = []v1alpha1.NodeVirtualService{{Namespace: key.Namespace, Name: key.Name, ObservedGeneration: gen,
		State: v1alpha1.StateProgrammed, Reason: v1alpha1.ReasonProgrammed, Message: "1 IPVS services programmed"}}
	must(t, k8s.Status().Update(ctx, in))
}

// TestArgoCDHealthOfVirtualServices runs the VirtualService health script on VirtualServices
// whose status the real controller (the binary, under its ServiceAccount) wrote.
func TestArgoCDHealthOfVirtualServices(t *testing.T) {
	c := startController(t)
	appNamespace(t, "argo")
	key := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "argo", Name: n} }

	// Healthy: accepted, resolved, programmed on its one selected node, a ready backend.
	must(t, k8s.Create(ctx, virtualService("argo", "healthy", "192.0.2.100", map[string]string{"argo": "healthy"})))
	fakeNodeProgramming(t, "argo-healthy", map[string]string{"argo": "healthy"}, key("healthy"), 1)
	wantHealth(t, "VirtualService", key("healthy"), "Healthy", "", c.logs)

	// Progressing: its selected node has not reported this generation.
	must(t, k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "argo-slow", Labels: map[string]string{"argo": "slow"}}}))
	must(t, k8s.Create(ctx, virtualService("argo", "progressing", "192.0.2.101", map[string]string{"argo": "slow"})))
	wantHealth(t, "VirtualService", key("progressing"), "Progressing", "argo-slow", c.logs)

	// Progressing: a spec change the controller has not observed yet (the Healthy object with
	// its generation moved on, as Argo CD sees it right after a sync).
	var vs v1alpha1.VirtualService
	must(t, k8s.Get(ctx, key("healthy"), &vs))
	u, err := toUnstructured(&vs)
	must(t, err)
	u.SetGeneration(vs.Generation + 1)
	script, err := scripts.HealthScript("VirtualService")
	must(t, err)
	if h, err := gitops.Evaluate(script, u.Object); err != nil || h.Status != "Progressing" || !strings.Contains(h.Message, "generation 2") {
		t.Errorf("newer generation: %+v, %v", h, err)
	}

	// Degraded: loses 192.0.2.100:80/TCP to the older "healthy" (created in the same second,
	// the tie goes to the first name: "later" sorts after "healthy").
	must(t, k8s.Create(ctx, virtualService("argo", "later", "192.0.2.100", map[string]string{"argo": "healthy"})))
	wantHealth(t, "VirtualService", key("later"), "Degraded", "", c.logs)
	h, err := gitops.Live(ctx, k8s, "VirtualService", key("later"))
	must(t, err)
	if !strings.Contains(h.Message, "healthy") {
		t.Errorf("the conflict's message does not name the winner: %q", h.Message)
	}

	// Degraded: a backendRef to a Service that does not exist.
	missing := virtualService("argo", "missing", "192.0.2.102", nil)
	missing.Spec.BackendRefs = []v1alpha1.BackendRef{{Name: "nope"}}
	must(t, k8s.Create(ctx, missing))
	wantHealth(t, "VirtualService", key("missing"), "Degraded", "nope", c.logs)
}

// TestArgoCDHealthOfIPVSNodes runs the IPVSNode health script on IPVSNodes the real agent
// binary wrote on this host, which has no IPVS (Degraded), and one it created but could not
// write status to (Progressing). Healthy and conflicted IPVSNodes need a kernel with IPVS or
// the agent's fake kernel: test/e2e (in the VM) and internal/agent's envtest suite run the
// script on those.
func TestArgoCDHealthOfIPVSNodes(t *testing.T) {
	a := startAgent(t, "node-a")
	wantHealth(t, "IPVSNode", types.NamespacedName{Name: "node-a"}, "Degraded", "IPVS is not available", a.logs)

	// An IPVSNode without status: what the agent creates before its first status write.
	must(t, k8s.Create(ctx, &v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: "argo-new"}}))
	wantHealth(t, "IPVSNode", types.NamespacedName{Name: "argo-new"}, "Progressing", "Waiting", a.logs)
}

func toUnstructured(o client.Object) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	m, err := runtimeToMap(o)
	u.Object = m
	return u, err
}

func runtimeToMap(o client.Object) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(o)
}
