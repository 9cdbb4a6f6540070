package v1alpha1_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	// A node with 10,000 VirtualServices: the status the agent writes fits in one object (the
	// entries are an atomic list, Programmed ones without reason or message; written with
	// server-side apply as the agent does, so managedFields are as in production).
	big := n.DeepCopy()
	big.Status.VirtualServices = nil
	for i := range 10000 {
		e := entry(v1alpha1.StateProgrammed)
		e.Namespace, e.Name = "namespace-of-the-app", fmt.Sprintf("virtualservice-%05d", i)
		big.Status.VirtualServices = append(big.Status.VirtualServices, e)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(big)
	if err != nil {
		t.Fatal(err)
	}
	u["apiVersion"], u["kind"], u["metadata"] = "kubelvs.io/v1alpha1", "IPVSNode", map[string]any{"name": big.Name}
	delete(u, "spec")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := env.Client.Status().Apply(ctx, ac, client.FieldOwner("kubelvs-agent"), client.ForceOwnership); err != nil {
		t.Fatalf("the status of a node with 10,000 VirtualServices was rejected: %v", err)
	}

}
