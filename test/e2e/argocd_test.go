//go:build ipvsvm

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/gitops"
)

func waitHealth(t *testing.T, kind string, key types.NamespacedName, status, msg string) {
	t.Helper()
	eventually(t, fmt.Sprintf("Argo CD health of %s %s", kind, key), waitLong, func() error {
		h, err := gitops.Live(context.Background(), k8s, kind, key)
		if err != nil {
			return err
		}
		if h.Status != status || !strings.Contains(h.Message, msg) {
			return fmt.Errorf("%+v, want %s with %q", h, status, msg)
		}
		return nil
	})
}

// TestArgoCDHealth runs the Argo CD health scripts on what the real agents and controller
// write with a real IPVS kernel: the VirtualService and both IPVSNodes Healthy once it is
// programmed; with an ipvsadm-made service on a VIP:port another VirtualService wants, that
// VirtualService and n1's IPVSNode Degraded; Healthy again once the foreign service is gone.
func TestArgoCDHealth(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1")
	must(t, k8s.Create(ctx, virtualService(ns, "argo", []string{"192.0.2.60"}, 80, v1alpha1.BackendRef{Name: "web"})))
	key := types.NamespacedName{Namespace: ns, Name: "argo"}
	waitCondition(t, key, v1alpha1.ConditionReady, metav1.ConditionTrue, "2/2")
	waitHealth(t, "VirtualService", key, "Healthy", "")
	for _, n := range []string{"n1", "n2"} {
		waitHealth(t, "IPVSNode", types.NamespacedName{Name: n}, "Healthy", "")
	}

	ipvsadm(t, "n1", "-A", "-t", "192.0.2.61:80", "-s", "rr")
	must(t, k8s.Create(ctx, virtualService(ns, "argo-taken", []string{"192.0.2.61"}, 80, v1alpha1.BackendRef{Name: "web"})))
	taken := types.NamespacedName{Namespace: ns, Name: "argo-taken"}
	waitHealth(t, "IPVSNode", types.NamespacedName{Name: "n1"}, "Degraded", "192.0.2.61:80")
	waitHealth(t, "VirtualService", taken, "Degraded", "n1")
	waitHealth(t, "IPVSNode", types.NamespacedName{Name: "n2"}, "Healthy", "")

	ipvsadm(t, "n1", "-D", "-t", "192.0.2.61:80")
	waitHealth(t, "IPVSNode", types.NamespacedName{Name: "n1"}, "Healthy", "")
	waitHealth(t, "VirtualService", taken, "Healthy", "")
}
