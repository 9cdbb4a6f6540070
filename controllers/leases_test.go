package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// A node whose agent stopped renewing its Lease counts as not programmed, and the status says
// why; a renewal brings it back. No event marks the expiry: the controller has to notice it.
func TestExpiredAgentLease(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultAgentLeaseNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	nodes := newNodes(t, "lease", 1)
	must(t, k8s.Create(ctx, service(ns, "web", 80)))
	must(t, k8s.Create(ctx, endpointSlice(ns, "web-1", "web", 80, ready("10.21.1.1"))))
	vs := virtualService(ns, "web", "10.10.9.1", "lease", "web")
	must(t, k8s.Create(ctx, vs))
	key := client.ObjectKeyFromObject(vs)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultAgentLeaseNamespace, Name: AgentLeasePrefix + nodes[0]},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(nodes[0]), LeaseDurationSeconds: ptr.To[int32](3),
			RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	must(t, k8s.Create(ctx, lease))
	report(t, nodes[0], key, 1, v1alpha1.StateProgrammed, "", "")
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, T+"/Programmed"), nodes: "1/1"})

	// The agent stops renewing: within the Lease's 3 s the node no longer counts.
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, F+"/Pending"), nodes: "0/1",
		message: map[string]string{v1alpha1.ConditionProgrammed: fmt.Sprintf("generation 1 programmed on 0/1 nodes; waiting for %s (agent Lease expired)", nodes[0])}})

	lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](300)
	must(t, k8s.Update(ctx, lease))
	waitStatus(t, key, expect{conds: conds(v1alpha1.ConditionProgrammed, T+"/Programmed"), nodes: "1/1"})
}
