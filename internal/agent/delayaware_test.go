package agent

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/podstats"
	"github.com/kubelvs/kubelvs/pkg/ipvs"
)

// TestDelayAwareWeights: a DelayAware VirtualService's destinations get their pods' weights from
// the pods' kubelvs.io/TaskDelays condition (as another node's agent writes it), changed in place
// when a pod's level changes, and back when it recovers; a static VirtualService's do not move.
func TestDelayAwareWeights(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	node := "agent-delayaware"
	must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "delayaware-"}}
	must(t, c.Create(ctx, ns))
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"web-a", "web-b"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: corev1.PodSpec{NodeName: "elsewhere", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		must(t, c.Create(ctx, p))
		pods[name] = p
	}
	must(t, c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}))
	ep := func(addr, pod string) discoveryv1.Endpoint {
		e := endpoint(addr, true)
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns.Name, Name: pod}
		return e
	}
	must(t, c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns.Name, Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{ep("10.2.0.1", "web-a"), ep("10.2.0.2", "web-b")},
	}))
	for name, w := range map[string]v1alpha1.Weighting{"aware": v1alpha1.WeightingDelayAware, "static": ""} {
		addr := map[string]string{"aware": "192.0.2.20", "static": "192.0.2.21"}[name]
		must(t, c.Create(ctx, &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Spec: v1alpha1.VirtualServiceSpec{
			Addresses: []string{addr}, Ports: []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: v1alpha1.ProtocolTCP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "web"}}, Weighting: w}}))
	}
	fk := newFakeKernel()
	startAgent(t, node, fk)
	table := func(a, b int) []string {
		return []string{
			"-A TCP 192.0.2.20:80 -s wrr",
			"-A TCP 192.0.2.21:80 -s wrr",
			fmt.Sprintf("-a TCP 192.0.2.20:80 -r 10.2.0.1:8080 -w %d Masquerade", a),
			fmt.Sprintf("-a TCP 192.0.2.20:80 -r 10.2.0.2:8080 -w %d Masquerade", b),
			"-a TCP 192.0.2.21:80 -r 10.2.0.1:8080 -w 1 Masquerade",
			"-a TCP 192.0.2.21:80 -r 10.2.0.2:8080 -w 1 Masquerade",
		}
	}
	wait := func(what string, want []string) {
		t.Helper()
		eventually(t, what, func() error {
			if d := cmp.Diff(want, fk.dump()); d != "" {
				return fmt.Errorf("(-want +got):\n%s", d)
			}
			return nil
		})
	}
	wait("full scaled weights", table(100, 100))

	setCondition := func(pod, msg string) {
		t.Helper()
		body := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"False","reason":"CPUDelayHigh","message":%q}]}}`, podstats.ConditionType, msg)
		must(t, c.Status().Patch(ctx, pods[pod], client.RawPatch("application/strategic-merge-patch+json", []byte(body))))
	}
	fk.resetCounts()
	setCondition("web-b", "cpu=61.0% io=0.0% mem=0.0% procs=2 window=30s weight=10%")
	wait("web-b starved: a tenth of the weight", table(100, 10))
	if n := fk.kind(ipvs.UpdateDestination); n != 1 || fk.kind(ipvs.DeleteDestination) != 0 || fk.kind(ipvs.AddDestination) != 0 {
		t.Errorf("weight change: %v, want one in-place destination edit", fk.kinds())
	}
	setCondition("web-b", "cpu=20.0% io=0.0% mem=0.0% procs=2 window=30s weight=70%")
	wait("web-b recovering", table(100, 70))
	setCondition("web-b", "cpu=1.0% io=0.0% mem=0.0% procs=2 window=30s weight=100%")
	wait("web-b recovered", table(100, 100))
	if n := fk.kind(ipvs.UpdateDestination); n != 3 || fk.kind(ipvs.DeleteDestination) != 0 || fk.kind(ipvs.AddDestination) != 0 {
		t.Errorf("three weight changes: %v, want three in-place destination edits", fk.kinds())
	}
}
