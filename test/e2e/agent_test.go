//go:build ipvsvm

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

const waitLong = 90 * time.Second

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	must(t, k8s.Create(context.Background(), ns))
	// envtest has no namespace controller: delete the test's VirtualServices, so that the
	// agents drain and remove their services before the next test.
	t.Cleanup(func() {
		if err := k8s.DeleteAllOf(context.Background(), &v1alpha1.VirtualService{}, client.InNamespace(ns.Name)); err != nil {
			t.Errorf("deleting the VirtualServices of %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// backendsSvc creates a Service "name" (port 80 to target 8080) without endpoints.
func backendsSvc(t *testing.T, ns, name string) {
	t.Helper()
	must(t, k8s.Create(context.Background(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}))
}

// backends creates a Service "name" (port 80 to target 8080) and one ready endpoint per
// address in EndpointSlices of the addresses' families.
func backends(t *testing.T, ns, name string, addrs ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	ctx := context.Background()
	backendsSvc(t, ns, name)
	var first *discoveryv1.EndpointSlice
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-" + strings.ToLower(string(fam)), Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: fam,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for _, a := range addrs {
			if strings.Contains(a, ":") == (fam == discoveryv1.AddressTypeIPv6) {
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
			}
		}
		if len(es.Endpoints) == 0 {
			continue
		}
		must(t, k8s.Create(ctx, es))
		if first == nil {
			first = es
		}
	}
	return first
}

func virtualService(ns, name string, addrs []string, port int32, refs ...v1alpha1.BackendRef) *v1alpha1.VirtualService {
	return &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: addrs, Ports: []v1alpha1.VirtualServicePort{{Port: port, Protocol: v1alpha1.ProtocolTCP}}, BackendRefs: refs}}
}

func waitTable(t *testing.T, node string, want []string, addrs ...string) {
	t.Helper()
	eventually(t, "ipvsadm -Sn in "+node, waitLong, func() error {
		if diff := cmp.Diff(want, table(t, node, addrs...)); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})
}

func waitCondition(t *testing.T, key types.NamespacedName, cond string, status metav1.ConditionStatus, nodes string) *v1alpha1.VirtualService {
	t.Helper()
	var vs v1alpha1.VirtualService
	eventually(t, fmt.Sprintf("%s %s=%s", key, cond, status), waitLong, func() error {
		if err := k8s.Get(context.Background(), key, &vs); err != nil {
			return err
		}
		c := meta.FindStatusCondition(vs.Status.Conditions, cond)
		if c == nil || c.Status != status || c.ObservedGeneration != vs.Generation {
			return fmt.Errorf("condition %s: %+v", cond, c)
		}
		if nodes != "" && (vs.Status.Nodes == nil || vs.Status.Nodes.Summary != nodes) {
			return fmt.Errorf("nodes %+v, want %s", vs.Status.Nodes, nodes)
		}
		return nil
	})
	return &vs
}

func nodeEntry(t *testing.T, node string, key types.NamespacedName) (*v1alpha1.NodeVirtualService, *v1alpha1.IPVSNode) {
	t.Helper()
	var in v1alpha1.IPVSNode
	must(t, k8s.Get(context.Background(), types.NamespacedName{Name: node}, &in))
	for i := range in.Status.VirtualServices {
		if e := &in.Status.VirtualServices[i]; e.Namespace == key.Namespace && e.Name == key.Name {
			return e, &in
		}
	}
	return nil, &in
}

// 1. Empty to programmed: Service-backed, BackendPool-backed, dual-stack and firewall-mark
// VirtualServices on both nodes; IPVSNode and the VirtualServices' conditions.
func TestProgramsFromEmpty(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1", "10.1.0.2", "fd00::1")
	must(t, k8s.Create(ctx, virtualService(ns, "web", []string{"192.0.2.10"}, 80, v1alpha1.BackendRef{Name: "web"})))
	must(t, k8s.Create(ctx, &v1alpha1.BackendPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}, Spec: v1alpha1.BackendPoolSpec{
		Servers: []v1alpha1.RealServer{{Address: "198.51.100.1", Weight: ptr.To[int32](2)}, {Address: "198.51.100.2"}}}}))
	must(t, k8s.Create(ctx, virtualService(ns, "pool", []string{"192.0.2.11"}, 443,
		v1alpha1.BackendRef{Kind: v1alpha1.BackendKindBackendPool, Name: "pool", Port: ptr.To[int32](8443)})))
	must(t, k8s.Create(ctx, virtualService(ns, "dual", []string{"192.0.2.12", "2001:db8::12"}, 80, v1alpha1.BackendRef{Name: "web"})))
	marked := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "marked"}, Spec: v1alpha1.VirtualServiceSpec{
		FirewallMark: ptr.To[int64](16), BackendRefs: []v1alpha1.BackendRef{{Name: "web", Port: ptr.To[int32](80)}},
		Forwarding: &v1alpha1.Forwarding{Method: v1alpha1.ForwardingDirectRouting}}}
	must(t, k8s.Create(ctx, marked))

	want := []string{
		"-A -f 16 -6 -s wrr",
		"-A -f 16 -s wrr",
		"-A -t 192.0.2.10:80 -s wrr",
		"-A -t 192.0.2.11:443 -s wrr",
		"-A -t 192.0.2.12:80 -s wrr",
		"-A -t [2001:db8::12]:80 -s wrr",
		"-a -f 16 -6 -r [fd00::1]:0 -g -w 1",
		"-a -f 16 -r 10.1.0.1:0 -g -w 1",
		"-a -f 16 -r 10.1.0.2:0 -g -w 1",
		"-a -t 192.0.2.10:80 -r 10.1.0.1:8080 -m -w 1",
		"-a -t 192.0.2.10:80 -r 10.1.0.2:8080 -m -w 1",
		"-a -t 192.0.2.11:443 -r 198.51.100.1:8443 -m -w 2",
		"-a -t 192.0.2.11:443 -r 198.51.100.2:8443 -m -w 1",
		"-a -t 192.0.2.12:80 -r 10.1.0.1:8080 -m -w 1",
		"-a -t 192.0.2.12:80 -r 10.1.0.2:8080 -m -w 1",
		"-a -t [2001:db8::12]:80 -r [fd00::1]:8080 -m -w 1",
	}
	for _, node := range []string{"n1", "n2"} {
		waitTable(t, node, want, "192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::12", "16")
	}
	for _, name := range []string{"web", "pool", "dual", "marked"} {
		key := types.NamespacedName{Namespace: ns, Name: name}
		waitCondition(t, key, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, "2/2")
		waitCondition(t, key, v1alpha1.ConditionReady, metav1.ConditionTrue, "")
		for _, node := range []string{"n1", "n2"} {
			e, in := nodeEntry(t, node, key)
			if e == nil || e.State != v1alpha1.StateProgrammed || e.ObservedGeneration != 1 {
				t.Errorf("IPVSNode %s entry for %s: %+v", node, key, e)
			}
			if c := meta.FindStatusCondition(in.Status.Conditions, v1alpha1.NodeConditionIPVSAvailable); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("IPVSNode %s IPVSAvailable: %+v", node, c)
			}
			if in.Status.Kernel == nil || !strings.HasPrefix(in.Status.Kernel.IPVSVersion, "1.2") {
				t.Errorf("IPVSNode %s kernel info %+v", node, in.Status.Kernel)
			}
			if in.Status.Kernel != nil {
				want := []v1alpha1.Sysctl{{Name: "net.ipv4.vs.expire_nodest_conn", Value: "1"}, {Name: "net.ipv4.vs.expire_quiescent_template", Value: "1"},
					{Name: "net.ipv4.vs.conntrack", Value: "1"}}
				if diff := cmp.Diff(want, in.Status.Kernel.Sysctls); diff != "" {
					t.Errorf("IPVSNode %s sysctls (-want +got):\n%s", node, diff)
				}
			}
		}
	}
}

// 2. A service someone made with ipvsadm on the same VIP (another port) is untouched; one on
// the same VIP:port is a conflict, reported and left alone.
func TestLeavesOthersAlone(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1")
	ipvsadm(t, "n1", "-A", "-t", "192.0.2.20:22", "-s", "rr")
	ipvsadm(t, "n1", "-a", "-t", "192.0.2.20:22", "-r", "10.9.0.1:22", "-m", "-w", "3")
	ipvsadm(t, "n1", "-A", "-t", "192.0.2.21:80", "-s", "rr")
	must(t, k8s.Create(ctx, virtualService(ns, "other-port", []string{"192.0.2.20"}, 80, v1alpha1.BackendRef{Name: "web"})))
	must(t, k8s.Create(ctx, virtualService(ns, "taken", []string{"192.0.2.21"}, 80, v1alpha1.BackendRef{Name: "web"})))
	waitTable(t, "n1", []string{
		"-A -t 192.0.2.20:22 -s rr",
		"-A -t 192.0.2.20:80 -s wrr",
		"-A -t 192.0.2.21:80 -s rr",
		"-a -t 192.0.2.20:22 -r 10.9.0.1:22 -m -w 3",
		"-a -t 192.0.2.20:80 -r 10.1.0.1:8080 -m -w 1",
	}, "192.0.2.20", "192.0.2.21")
	waitTable(t, "n2", []string{"-A -t 192.0.2.21:80 -s wrr", "-a -t 192.0.2.21:80 -r 10.1.0.1:8080 -m -w 1"}, "192.0.2.21")
	key := types.NamespacedName{Namespace: ns, Name: "taken"}
	eventually(t, "the conflict in n1's IPVSNode", waitLong, func() error {
		e, in := nodeEntry(t, "n1", key)
		if e == nil || e.State != v1alpha1.StateFailed || e.Reason != "Conflict" {
			return fmt.Errorf("entry %+v", e)
		}
		if c := meta.FindStatusCondition(in.Status.Conditions, v1alpha1.NodeConditionConflictFree); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("ConflictFree %+v", c)
		}
		return nil
	})
	waitCondition(t, key, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, "")
	// An audit later, the foreign services are still as they were.
	time.Sleep(4 * time.Second)
	if got := table(t, "n1", "192.0.2.21"); !cmp.Equal(got, []string{"-A -t 192.0.2.21:80 -s rr"}) {
		t.Errorf("the foreign service changed: %v", got)
	}
	// Once the foreign service is gone, the next audit lets the VirtualService have its key.
	ipvsadm(t, "n1", "-D", "-t", "192.0.2.20:22")
	ipvsadm(t, "n1", "-D", "-t", "192.0.2.21:80")
	waitTable(t, "n1", []string{"-A -t 192.0.2.21:80 -s wrr", "-a -t 192.0.2.21:80 -r 10.1.0.1:8080 -m -w 1"}, "192.0.2.21")
	waitCondition(t, key, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, "2/2")
}

// 3. Drift repaired by the audit: a deleted service, an edited weight, a destination added by
// hand to an owned service.
func TestRepairsDrift(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1", "10.1.0.2")
	must(t, k8s.Create(ctx, virtualService(ns, "drift", []string{"192.0.2.30"}, 80, v1alpha1.BackendRef{Name: "web"})))
	want := []string{
		"-A -t 192.0.2.30:80 -s wrr",
		"-a -t 192.0.2.30:80 -r 10.1.0.1:8080 -m -w 1",
		"-a -t 192.0.2.30:80 -r 10.1.0.2:8080 -m -w 1",
	}
	waitTable(t, "n1", want, "192.0.2.30")
	a := nodes["n1"]
	before := a.metric(t, "kubelvs_agent_audit_repairs_total")
	ipvsadm(t, "n1", "-D", "-t", "192.0.2.30:80")
	waitTable(t, "n1", want, "192.0.2.30")
	ipvsadm(t, "n1", "-e", "-t", "192.0.2.30:80", "-r", "10.1.0.2:8080", "-m", "-w", "9")
	ipvsadm(t, "n1", "-a", "-t", "192.0.2.30:80", "-r", "10.9.9.9:8080", "-m", "-w", "1")
	waitTable(t, "n1", want, "192.0.2.30")
	eventually(t, "the repairs counted", 10*time.Second, func() error {
		kinds := map[string]float64{}
		for _, k := range []string{"ServiceMissing", "DestinationMissing", "DestinationChanged", "DestinationUnexpected"} {
			kinds[k] = a.metric(t, "kubelvs_agent_audit_repairs_total", `kind="`+k+`"`)
		}
		if kinds["ServiceMissing"] < 1 || kinds["DestinationMissing"] < 2 || kinds["DestinationChanged"] < 1 || kinds["DestinationUnexpected"] < 1 {
			return fmt.Errorf("repairs by kind %v (all kinds before: %v)", kinds, before)
		}
		return nil
	})
}

// 4. SIGKILL and restart: the agent adopts the table and writes nothing.
func TestRestartWritesNothing(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1", "10.1.0.2")
	must(t, k8s.Create(ctx, virtualService(ns, "restart", []string{"192.0.2.40"}, 80, v1alpha1.BackendRef{Name: "web"})))
	want := []string{
		"-A -t 192.0.2.40:80 -s wrr",
		"-a -t 192.0.2.40:80 -r 10.1.0.1:8080 -m -w 1",
		"-a -t 192.0.2.40:80 -r 10.1.0.2:8080 -m -w 1",
	}
	waitTable(t, "n1", want, "192.0.2.40")
	// The earlier tests' VirtualServices are deleted as they end: wait until n1 has finished
	// draining and removing their services (finishing that after the restart would be writes
	// of theirs, not of the restart). The status must list this test's VirtualService as its
	// only one: a status written before it was programmed (writes are spaced) can show an
	// earlier test's, still draining, as the one service.
	eventually(t, "n1 holding only this test's VirtualService", time.Minute, func() error {
		var in v1alpha1.IPVSNode
		if err := k8s.Get(ctx, types.NamespacedName{Name: "n1"}, &in); err != nil {
			return err
		}
		vss := in.Status.VirtualServices
		if len(vss) != 1 || vss[0].Namespace != ns || vss[0].Name != "restart" || in.Status.Counts.Services != 1 {
			return fmt.Errorf("entries %+v, %d services", vss, in.Status.Counts.Services)
		}
		return nil
	})
	a := nodes["n1"]
	a.kill()
	must(t, a.start())
	// Past one audit period: still no write.
	time.Sleep(5 * time.Second)
	if w := a.metric(t, "kubelvs_agent_netlink_requests_total", `kind="write"`); w != 0 {
		t.Errorf("the restarted agent sent %v IPVS writes, want 0", w)
	}
	if d := a.metric(t, "kubelvs_agent_netlink_requests_total", `kind="dump"`); d == 0 {
		t.Errorf("the restarted agent read nothing (want its start-up table read and audits)")
	}
	if diff := cmp.Diff(want, table(t, "n1", "192.0.2.40")); diff != "" {
		t.Errorf("table after restart (-want +got):\n%s", diff)
	}
}

// 5. A VirtualService deleted while the agent is down is cleaned up when it starts.
func TestDeletedWhileDown(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1")
	vs := virtualService(ns, "gone", []string{"192.0.2.50"}, 80, v1alpha1.BackendRef{Name: "web"})
	must(t, k8s.Create(ctx, vs))
	want := []string{"-A -t 192.0.2.50:80 -s wrr", "-a -t 192.0.2.50:80 -r 10.1.0.1:8080 -m -w 1"}
	waitTable(t, "n1", want, "192.0.2.50")
	waitTable(t, "n2", want, "192.0.2.50")
	a := nodes["n2"]
	a.kill()
	must(t, k8s.Delete(ctx, vs))
	waitTable(t, "n1", nil, "192.0.2.50")
	if diff := cmp.Diff(want, table(t, "n2", "192.0.2.50")); diff != "" {
		t.Fatalf("n2 changed while its agent was down (-want +got):\n%s", diff)
	}
	must(t, a.start())
	waitTable(t, "n2", nil, "192.0.2.50")
}

// 8. A nodeSelector choosing one of the two nodes programs only that node, and the
// VirtualService shows 1/1 nodes.
func TestNodeSelector(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	backends(t, ns, "web", "10.1.0.1")
	vs := virtualService(ns, "zone-a", []string{"192.0.2.60"}, 80, v1alpha1.BackendRef{Name: "web"})
	vs.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	must(t, k8s.Create(ctx, vs))
	waitTable(t, "n1", []string{"-A -t 192.0.2.60:80 -s wrr", "-a -t 192.0.2.60:80 -r 10.1.0.1:8080 -m -w 1"}, "192.0.2.60")
	waitCondition(t, types.NamespacedName{Namespace: ns, Name: "zone-a"}, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, "1/1")
	if got := table(t, "n2", "192.0.2.60"); len(got) != 0 {
		t.Errorf("n2 (zone b) has %v", got)
	}
	if e, _ := nodeEntry(t, "n2", types.NamespacedName{Namespace: ns, Name: "zone-a"}); e != nil {
		t.Errorf("n2's IPVSNode lists %+v", e)
	}
}
