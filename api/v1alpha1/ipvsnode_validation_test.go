package v1alpha1_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// TestIPVSNodeStatusValidation: the agent's status writes are validated by the schema too.
func TestIPVSNodeStatusValidation(t *testing.T) {
	ctx := context.Background()
	n := &v1alpha1.IPVSNode{ObjectMeta: metav1.ObjectMeta{Name: "validation-node"}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })

	entry := func(state v1alpha1.NodeVirtualServiceState) v1alpha1.NodeVirtualService {
		return v1alpha1.NodeVirtualService{Namespace: "default", Name: "web", ObservedGeneration: 3, State: state,
			RealServers: &v1alpha1.RealServerCounts{Active: 2, Draining: 1}}
	}
	n.Status = v1alpha1.IPVSNodeStatus{
		Conditions: []metav1.Condition{{Type: v1alpha1.NodeConditionIPVSAvailable, Status: metav1.ConditionTrue,
			Reason: "Available", LastTransitionTime: metav1.Now()}},
		Kernel:          &v1alpha1.KernelInfo{Release: "6.1.0-40-amd64", Schedulers: []string{"rr", "wrr", "mh"}},
		Counts:          &v1alpha1.IPVSCounts{VirtualServices: 1, Services: 1, Destinations: 3},
		VirtualServices: []v1alpha1.NodeVirtualService{entry(v1alpha1.StateProgrammed)},
	}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatalf("a valid agent status was rejected: %v", err)
	}

	for _, tc := range []struct {
		name string
		vss  []v1alpha1.NodeVirtualService
		want string
	}{
		{"unknown state", []v1alpha1.NodeVirtualService{entry("Done")},
			`IPVSNode.kubelvs.io "validation-node" is invalid: status.virtualServices[0].state: Unsupported value: "Done": supported values: "Programmed", "Pending", "Failed", "Draining"`},
		{"one VirtualService twice", []v1alpha1.NodeVirtualService{entry(v1alpha1.StatePending), entry(v1alpha1.StateFailed)},
			`IPVSNode.kubelvs.io "validation-node" is invalid: status.virtualServices[1]: Duplicate value: {"name":"web","namespace":"default"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := n.DeepCopy()
			bad.Status.VirtualServices = tc.vss
			err := env.Client.Status().Update(ctx, bad)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}
