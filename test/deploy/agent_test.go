package deploy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

var (
	agentMu sync.Mutex
	agents  = map[string]*component{}
)

// startAgent runs `kubelvs agent` for node (a Node it creates) with the DaemonSet's arguments
// (downward-API values for that node; state and sysctl paths in a temporary directory; bind
// addresses on free local ports), acting as the kubelvs-agent ServiceAccount. This host has no
// IPVS: the agent runs, reports IPVSAvailable=False in its IPVSNode and keeps its Lease.
func startAgent(t *testing.T, node string) *component {
	t.Helper()
	install(t)
	agentMu.Lock()
	defer agentMu.Unlock()
	if a := agents[node]; a != nil {
		return a
	}
	must(t, k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}))
	dir := t.TempDir()
	a := &component{metrics: freeAddr(t), probes: freeAddr(t)}
	args := containerArgs(t, workload(t, "DaemonSet", "kubelvs-agent"),
		map[string]string{"spec.nodeName": node, "metadata.name": "kubelvs-agent-" + node, "metadata.namespace": systemNS},
		map[string]string{"state-dir": dir + "/state", "sysctl-root": dir + "/sys",
			"metrics-bind-address": a.metrics, "health-probe-bind-address": a.probes})
	a.proc = start(t, append(args, "--kubeconfig="+impersonating(t, "kubelvs-agent"))...)
	agents[node] = a
	return a
}

// ipvsNode waits for the node's IPVSNode to satisfy check.
func ipvsNode(t *testing.T, node string, logs func() string, check func(*v1alpha1.IPVSNode) error) *v1alpha1.IPVSNode {
	t.Helper()
	var n v1alpha1.IPVSNode
	eventually(t, "IPVSNode "+node, func() error {
		if err := k8s.Get(ctx, types.NamespacedName{Name: node}, &n); err != nil {
			return err
		}
		return check(&n)
	}, logs)
	return &n
}

func ipvsUnavailable(n *v1alpha1.IPVSNode) error {
	c := findCondition(n.Status.Conditions, v1alpha1.NodeConditionIPVSAvailable)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "IPVSUnavailable" {
		return fmt.Errorf("IPVSAvailable %+v", c)
	}
	return nil
}

// TestAgentUnderItsRBAC runs the agent with exactly its ServiceAccount's permissions: it
// creates its IPVSNode (owned by its Node) and writes its status, and keeps its Lease, without
// a "forbidden"; an agent started with ipvsnodes/status removed from the ClusterRole creates
// the IPVSNode but fails on exactly the status write.
func TestAgentUnderItsRBAC(t *testing.T) {
	a := startAgent(t, "node-a")
	n := ipvsNode(t, "node-a", a.logs, ipvsUnavailable)
	if len(n.OwnerReferences) != 1 || n.OwnerReferences[0].Kind != "Node" || n.OwnerReferences[0].Name != "node-a" {
		t.Errorf("owner references %+v", n.OwnerReferences)
	}
	if n.Status.Agent == nil || n.Status.Agent.PodName != "kubelvs-agent-node-a" {
		t.Errorf("agent info %+v (the pod name comes from the downward API)", n.Status.Agent)
	}
	eventually(t, "the agent's Lease", func() error {
		var l coordinationv1.Lease
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: systemNS, Name: "kubelvs-agent-node-a"}, &l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	}, a.logs)
	if strings.Contains(a.logs(), "forbidden") {
		t.Fatalf("the agent was refused something with its ServiceAccount's permissions:\n%s", a.logs())
	}

	var role rbacv1.ClusterRole
	must(t, k8s.Get(ctx, types.NamespacedName{Name: "kubelvs-agent"}, &role))
	i := slices.IndexFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Equal(r.Resources, []string{"ipvsnodes/status"}) })
	if i < 0 {
		t.Fatalf("the agent's ClusterRole has no ipvsnodes/status rule: %+v", role.Rules)
	}
	role.Rules = slices.Delete(role.Rules, i, i+1)
	must(t, k8s.Update(ctx, &role))
	t.Cleanup(func() { _, _ = apply("--force-conflicts") })
	waitAllowed(t, "kubelvs-agent", "patch", "ipvsnodes", "status", "", false)
	b := startAgent(t, "node-b")
	want := `cannot patch resource "ipvsnodes/status" in API group "kubelvs.io" at the cluster scope`
	eventually(t, "the agent's error on the missing rule", func() error {
		if !strings.Contains(strings.ReplaceAll(b.logs(), `\"`, `"`), want) {
			return fmt.Errorf("no log line with %q", want)
		}
		return nil
	}, b.logs)
	nb := ipvsNode(t, "node-b", b.logs, func(*v1alpha1.IPVSNode) error { return nil })
	if len(nb.Status.Conditions) != 0 {
		t.Errorf("status written without the rule: %+v", nb.Status)
	}
	b.stop()
}
